/**
 * Paths and contents of the committed TLS test fixtures in test/fixtures/tls (made by make-certs.sh there): the test
 * CA, the `localhost` server certificate it signed, a client certificate with an encrypted key (passphrase
 * `effect-mqtt-test`) and an unrelated CA with its own server certificate for "wrong CA" tests.
 */
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"

/** Folder holding the fixture files. */
export const fixturesDir: string = fileURLToPath(new URL("../fixtures/tls/", import.meta.url))

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/tls/${name}`, import.meta.url))

/** Absolute paths of the fixture files. */
export const paths = {
  ca: fixture("ca.crt"),
  caKey: fixture("ca.key"),
  serverCert: fixture("server.crt"),
  serverKey: fixture("server.key"),
  clientCert: fixture("client.crt"),
  clientKey: fixture("client.key"),
  clientPlainKey: fixture("client-plain.key"),
  otherCa: fixture("other-ca.crt"),
  otherCaKey: fixture("other-ca.key"),
  otherServerCert: fixture("other-server.crt"),
  otherServerKey: fixture("other-server.key")
} as const

/** Passphrase of the encrypted `client.key`. */
export const clientKeyPassphrase = "effect-mqtt-test"

/** Reads one fixture file (synchronously: they are tiny and read once per test). */
export const read = (name: keyof typeof paths): Buffer => fs.readFileSync(paths[name])
