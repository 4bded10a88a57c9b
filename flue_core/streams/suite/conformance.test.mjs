// The official Durable Streams server conformance suite, run against the server at DS_URL
// (for example http://127.0.0.1:8787/streams). Started by flue_core.streams.conformance and scripts/conformance.
import { describe } from "vitest"
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.DS_URL
if (!baseUrl) throw new Error("Set DS_URL to the base URL of the stream server under test.")

describe("flue", () => {
  runConformanceTests({ baseUrl })
})
