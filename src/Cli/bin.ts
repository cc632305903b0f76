#!/usr/bin/env node
/**
 * The `effect-mqtt` executable: runs the CLI on the process arguments with the Node services, and exits with the
 * code the CLI chose (0 ok, 1 failure, 2 usage, 3 refused, 4 timeout; see `Exit`). Failures were already printed.
 *
 * @since 0.1.0
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import * as Effect from "effect/Effect"
import * as Cli from "./Cli.ts"

NodeRuntime.runMain(Cli.run(process.argv.slice(2)).pipe(Effect.provide(NodeServices.layer)), {
  disableErrorReporting: true
})
