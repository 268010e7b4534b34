// Checks a callback's signature: the raw body on stdin, the header value as
// the argument, the token's callback secret in COUNTERSIGN_CALLBACK_SECRET.
//
//   node dist/verify-callback.js "t=1700000000,v1=5f2c..." < body.json
//
// Exits 0 when the signature is valid and recent, 1 otherwise. In a web
// handler, call verifySignature(secret, header, rawBody) the same way.
import { readFileSync } from "node:fs";
import { verifySignature } from "./countersign.js";

const secret = process.env.COUNTERSIGN_CALLBACK_SECRET;
const header = process.argv[2];
if (!secret || !header) {
  console.error("usage: COUNTERSIGN_CALLBACK_SECRET=... node dist/verify-callback.js HEADER < body");
  process.exit(2);
}
if (verifySignature(secret, header, readFileSync(0))) {
  console.log("valid");
} else {
  console.error("invalid");
  process.exitCode = 1;
}
