import { defineConfig } from "vitest/config"

export default defineConfig({
  resolve: {
    conditions: ["@effect-mqtt/source"]
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ["default", "./test/summary-reporter.ts"]
  }
})
