// Checks solidity/Sha512.sol, solidity/Ed25519.sol and solidity/Blake3.sol
// against reference implementations, through solidity/test/CryptoHarness.sol
// deployed on a local anvil:
//   * SHA-512 against node:crypto;
//   * Ed25519 against node:crypto's signatures, plus hand-made edge cases
//     (non-canonical S and encodings, small-order and mixed-order points)
//     whose expected answers are those of ed25519-dalek's `verify_strict`;
//   * BLAKE3 against Python's `blake3` package (the Rust crate's bindings)
//     when `python3 -c "import blake3"` works, and always against digests
//     of the official test-vector inputs (byte i = i % 251) recorded below.
// It prints the gas of a verify (300-byte message), of SHA-512 and BLAKE3
// on 300 bytes, and the harness's deployed size (EIP-170: 24576 bytes).
//
//   node scripts/crypto-check.mjs      (from contracts-evm/, or anywhere)
//
// Exits non-zero on any mismatch. Starts anvil on a free 127.0.0.1 port in
// 19000-19999 and stops it at the end.

import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const sourceDir = path.join(root, "solidity");
const anvilBin = path.join(root, "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");

// ---------------------------------------------------------------- reporting

let passed = 0;
let failed = 0;
function check(cond, what) {
  if (cond) {
    passed += 1;
  } else {
    failed += 1;
    if (failed <= 40) console.error(`FAIL ${what}`);
  }
}

// ---------------------------------------------------------------- compile

function compile() {
  const entry = "test/CryptoHarness.sol";
  const input = {
    language: "Solidity",
    sources: { [entry]: { content: fs.readFileSync(path.join(sourceDir, entry), "utf8") } },
    settings: {
      optimizer: { enabled: true, runs: 200 },
      viaIR: false,
      evmVersion: "cancun",
      metadata: { bytecodeHash: "none", appendCBOR: false },
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "evm.methodIdentifiers"] } },
    },
  };
  const findImports = (p) => {
    const full = path.join(sourceDir, p);
    if (!full.startsWith(sourceDir + path.sep) || !fs.existsSync(full)) return { error: `not found: ${p}` };
    return { contents: fs.readFileSync(full, "utf8") };
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  for (const e of output.errors ?? []) console.error(e.formattedMessage);
  if (errors.length > 0) throw new Error(`solc ${solc.version()}: ${errors.length} error(s)`);
  const c = output.contracts[entry].CryptoHarness;
  return {
    bytecode: "0x" + c.evm.bytecode.object,
    deployedSize: c.evm.deployedBytecode.object.length / 2,
    selectors: c.evm.methodIdentifiers,
  };
}

// ---------------------------------------------------------------- anvil + JSON-RPC

function portFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

async function freePort() {
  for (let i = 0; i < 200; i++) {
    const port = 19000 + Math.floor(Math.random() * 1000);
    if (await portFree(port)) return port;
  }
  throw new Error("no free port in 19000-19999");
}

let rpcUrl;
let rpcId = 0;
async function rpc(method, params = []) {
  const res = await fetch(rpcUrl, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method, params }),
  });
  const body = await res.json();
  if (body.error) throw new Error(`${method}: ${JSON.stringify(body.error)}`);
  return body.result;
}

async function startAnvil() {
  const port = await freePort();
  const proc = spawn(anvilBin, ["--host", "127.0.0.1", "--port", String(port), "--silent"], { stdio: "ignore" });
  rpcUrl = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      await rpc("eth_chainId");
      return proc;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  proc.kill();
  throw new Error("anvil did not start");
}

// ---------------------------------------------------------------- ABI

const word = (hex) => hex.replace(/^0x/, "").padStart(64, "0");
const u256 = (n) => n.toString(16).padStart(64, "0");
function encBytes(buf) {
  const hex = Buffer.from(buf).toString("hex");
  return u256(BigInt(buf.length)) + hex.padEnd(Math.ceil(hex.length / 64) * 64, "0");
}

let harness;
let sel;
async function call(data) {
  const out = await rpc("eth_call", [{ to: harness, data, gas: "0x1c9c380" }, "latest"]);
  return out.replace(/^0x/, "");
}
const callBytes = (fn, buf) => call("0x" + sel[fn] + u256(32n) + encBytes(buf));
const callVerify = (fn, pub, sig, msg) =>
  call(
    "0x" + sel[fn] + pub.toString("hex") + sig.subarray(0, 32).toString("hex") + sig.subarray(32, 64).toString("hex") +
      u256(128n) + encBytes(msg),
  );

async function sha512(buf) {
  const out = await callBytes("sha512(bytes)", buf);
  return out.slice(0, 128);
}
async function blake3(buf) {
  return (await callBytes("blake3(bytes)", buf)).slice(0, 64);
}
async function verify(pub, sig, msg) {
  const out = await callVerify("verify(bytes32,bytes32,bytes32,bytes)", pub, sig, msg);
  return BigInt("0x" + out.slice(0, 64)) === 1n;
}

// Runs `f` over `items` with a few calls in flight at a time.
async function each(items, f, width = 8) {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await f(items[next++]);
    }),
  );
}

// ---------------------------------------------------------------- ed25519 in BigInt (for edge cases)

const p = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const md = (a, m = p) => ((a % m) + m) % m;
function pw(b, e, m = p) {
  let r = 1n;
  b = md(b, m);
  for (; e > 0n; e >>= 1n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
  }
  return r;
}
const inv = (a) => pw(a, p - 2n);
const d = md(-121665n * inv(121666n));
const sqrtM1 = pw(2n, (p - 1n) / 4n);
function xFrom(y, sign) {
  const u = md(y * y - 1n);
  const v = md(d * y * y + 1n);
  let x = md(u * pw(v, 3n) * pw(u * pw(v, 7n), (p - 5n) / 8n));
  const vxx = md(v * x * x);
  if (vxx === md(-u)) x = md(x * sqrtM1);
  else if (vxx !== u) return null;
  if (x === 0n && sign) return null;
  if (Number(x & 1n) !== sign) x = md(-x);
  return x;
}
// affine points [x, y]; the complete twisted Edwards addition law (a = -1)
function padd([x1, y1], [x2, y2]) {
  const t = md(d * x1 * x2 * y1 * y2);
  return [md((x1 * y2 + y1 * x2) * inv(1n + t)), md((y1 * y2 + x1 * x2) * inv(1n - t))];
}
function pmul(n, P) {
  let R = [0n, 1n];
  for (let Q = P; n > 0n; n >>= 1n, Q = padd(Q, Q)) if (n & 1n) R = padd(R, Q);
  return R;
}
const B = [xFrom(md(4n * inv(5n)), 0), md(4n * inv(5n))];
const le = (n) => Buffer.from(u256(n), "hex").reverse();
const leInt = (buf) => BigInt("0x" + Buffer.from(buf).reverse().toString("hex"));
const encode = ([x, y]) => le(y | ((x & 1n) << 255n));
const h512 = (...parts) => leInt(crypto.createHash("sha512").update(Buffer.concat(parts)).digest());
// A signature made from a known scalar a (any point A = [a]B + T allowed)
function signWith(a, Aenc, msg) {
  const r = h512(crypto.randomBytes(32)) % L;
  const Renc = encode(pmul(r, B));
  const k = h512(Renc, Aenc, msg) % L;
  return { sig: Buffer.concat([Renc, le(md(r + k * a, L))]), k };
}

// ---------------------------------------------------------------- BLAKE3 references

// BLAKE3 of the official test-vector input (byte i = i % 251), 32 bytes.
const BLAKE3_VECTORS = {
  0: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
  1: "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
  1023: "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11",
  1024: "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
  1025: "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
  2048: "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a",
  2049: "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030",
  3072: "b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2",
  3073: "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3",
  4096: "015094013f57a5277b59d8475c0501042c0b642e531b0a1c8f58d2163229e969",
};
const pattern = (n) => Buffer.from(Array.from({ length: n }, (_, i) => i % 251));

// Python's blake3 digests of the pattern inputs of the given lengths and of
// the given extra inputs, or null when the package is not there.
function pythonBlake3(lengths, extras) {
  const code =
    "import sys, json, blake3\n" +
    "req = json.load(sys.stdin)\n" +
    "pat = lambda n: bytes(i % 251 for i in range(n))\n" +
    "out = {'pattern': [blake3.blake3(pat(n)).hexdigest() for n in req['lengths']],\n" +
    "       'extras': [blake3.blake3(bytes.fromhex(h)).hexdigest() for h in req['extras']]}\n" +
    "print(json.dumps(out))\n";
  const res = spawnSync("python3", ["-c", code], {
    input: JSON.stringify({ lengths, extras: extras.map((b) => b.toString("hex")) }),
    maxBuffer: 64 << 20,
  });
  if (res.status !== 0) return null;
  return JSON.parse(res.stdout.toString());
}

// ---------------------------------------------------------------- checks

async function checkSha512() {
  const inputs = [];
  for (let n = 0; n <= 300; n++) inputs.push(crypto.randomBytes(n));
  for (const n of [511, 512, 1000, 1024, 4096, 10000]) inputs.push(crypto.randomBytes(n));
  inputs.push(Buffer.from("abc"));
  await each(inputs, async (buf) => {
    const want = crypto.createHash("sha512").update(buf).digest("hex");
    check((await sha512(buf)) === want, `sha512 of ${buf.length} bytes`);
  });
  console.log(`sha512: ${inputs.length} inputs (lengths 0..300 and up to 10000) checked`);
}

async function checkBlake3() {
  check((await blake3(Buffer.alloc(0))) === BLAKE3_VECTORS[0], "blake3 of the empty input");
  check((await blake3(Buffer.from("abc"))) === "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85", "blake3 of abc");
  for (const [n, want] of Object.entries(BLAKE3_VECTORS)) {
    check((await blake3(pattern(Number(n)))) === want, `blake3 test vector, ${n} bytes`);
  }
  const lengths = [];
  for (let n = 0; n <= 4096; n++) lengths.push(n);
  lengths.push(4097, 5120, 6144, 7168, 8191, 8192, 8193, 9217, 16384, 16385, 31744);
  const extras = [];
  for (const n of [1, 63, 64, 65, 300, 1023, 1024, 1025, 2047, 4096, 5000]) extras.push(crypto.randomBytes(n));
  const ref = pythonBlake3(lengths, extras);
  if (!ref) {
    console.log(`blake3: python3 blake3 not available; checked ${Object.keys(BLAKE3_VECTORS).length + 1} recorded digests only`);
    return;
  }
  await each(lengths, async (n) => {
    check((await blake3(pattern(n))) === ref.pattern[lengths.indexOf(n)], `blake3 of pattern, ${n} bytes`);
  });
  await each(extras, async (buf) => {
    check((await blake3(buf)) === ref.extras[extras.indexOf(buf)], `blake3 of ${buf.length} random bytes`);
  });
  console.log(`blake3: ${lengths.length} pattern lengths (0..4096 and up to 31744) and ${extras.length} random inputs against python blake3`);
}

function newKey() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync("ed25519");
  const pub = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  return { pub, privateKey };
}
const flip = (buf, bit) => {
  const out = Buffer.from(buf);
  out[bit >> 3] ^= 1 << (bit & 7);
  return out;
};

async function checkEd25519() {
  // Valid signatures for every message length 0..600, and for every third
  // one a flipped bit in M, R, S and A.
  const cases = [];
  for (let n = 0; n <= 600; n++) cases.push(n);
  cases.push(1000, 2047, 4096, 10000);
  let valid = 0;
  let forged = 0;
  await each(cases, async (n) => {
    const { pub, privateKey } = newKey();
    const msg = crypto.randomBytes(n);
    const sig = crypto.sign(null, msg, privateKey);
    check(await verify(pub, sig, msg), `valid signature, ${n}-byte message`);
    valid += 1;
    if (n % 3 !== 0) return;
    const rnd = (bits) => crypto.randomInt(bits);
    if (n > 0) check(!(await verify(pub, sig, flip(msg, rnd(n * 8)))), `flipped message bit, ${n} bytes`);
    check(!(await verify(pub, flip(sig, rnd(256)), msg)), `flipped R bit, ${n} bytes`);
    check(!(await verify(pub, flip(sig, 256 + rnd(256)), msg)), `flipped S bit, ${n} bytes`);
    check(!(await verify(flip(pub, rnd(256)), sig, msg)), `flipped A bit, ${n} bytes`);
    // S + L: the same point equation, a non-canonical S
    const S = leInt(sig.subarray(32));
    check(!(await verify(pub, Buffer.concat([sig.subarray(0, 32), le(S + L)]), msg)), `S + L, ${n} bytes`);
    // a message one byte longer or shorter
    check(!(await verify(pub, sig, Buffer.concat([msg, Buffer.from([0])]))), `appended byte, ${n} bytes`);
    if (n > 0) check(!(await verify(pub, sig, msg.subarray(1))), `dropped byte, ${n} bytes`);
    forged += 1;
  });
  console.log(`ed25519: ${valid} valid signatures (messages 0..600 bytes and 4 longer), ${forged} x up to 7 altered ones`);

  // The eight torsion points: [L]Q has order dividing 8; find one of order 8.
  let T8 = null;
  for (let y = 2n; !T8; y++) {
    const x = xFrom(y, 0);
    if (x === null) continue;
    const T = pmul(L, [x, y]);
    const T4 = pmul(4n, T);
    if (!(T4[0] === 0n && T4[1] === 1n)) T8 = T;
  }
  const torsion = Array.from({ length: 8 }, (_, i) => pmul(BigInt(i), T8));
  const msg = Buffer.from("agora torsion check");
  const { pub, privateKey } = newKey();
  const good = crypto.sign(null, msg, privateKey);
  for (const T of torsion) {
    const enc = encode(T);
    // Every small-order A and R fails, whatever the rest.
    check(!(await verify(enc, good, msg)), `small-order A ${enc.toString("hex")}`);
    check(!(await verify(pub, Buffer.concat([enc, good.subarray(32)]), msg)), `small-order R ${enc.toString("hex")}`);
  }
  // A = identity, S = 0, R = identity: [0]B = O + [k]O holds; small order.
  const ident = encode([0n, 1n]);
  check(!(await verify(ident, Buffer.concat([ident, Buffer.alloc(32)]), msg)), "identity A and R, S = 0");
  // A = identity, R = [r]B, S = r: the equation holds; A has small order.
  {
    const r = 12345678901234567890n;
    check(!(await verify(ident, Buffer.concat([encode(pmul(r, B)), le(r)]), msg)), "identity A, R = [S]B");
  }
  // The named encodings: 01 00..00 (identity), ec ff..ff 7f (order 2).
  const ecff = Buffer.from("ec" + "ff".repeat(30) + "7f", "hex");
  check(ecff.equals(encode([0n, p - 1n])), "order-2 encoding");
  check(!(await verify(Buffer.from("01" + "00".repeat(31), "hex"), good, msg)), "A = 01 00..00");
  check(!(await verify(ecff, good, msg)), "A = ec ff..ff 7f");
  // x = 0 with the sign bit set (identity, order 2)
  check(!(await verify(Buffer.from("01" + "00".repeat(30) + "80", "hex"), good, msg)), "A = identity with sign bit");
  check(!(await verify(Buffer.from("ec" + "ff".repeat(31), "hex"), good, msg)), "A = order 2 with sign bit");

  // Non-canonical y (p <= y < 2^255) in A and in R, including those that
  // reduce to points of large order (y = 3, 4, ...).
  for (let dy = 0n; dy < 19n; dy++) {
    for (const sign of [0n, 1n]) {
      const enc = le((p + dy) | (sign << 255n));
      check(!(await verify(enc, good, msg)), `A with y = p + ${dy}, sign ${sign}`);
      check(!(await verify(pub, Buffer.concat([enc, good.subarray(32)]), msg)), `R with y = p + ${dy}, sign ${sign}`);
    }
  }
  // y not on the curve (no square root): y = 2 has none
  check(xFrom(2n, 0) === null, "y = 2 is off the curve");
  check(!(await verify(le(2n), good, msg)), "A off the curve");
  check(!(await verify(pub, Buffer.concat([le(2n), good.subarray(32)]), msg)), "R off the curve");
  // S = L and S = 2^256 - 1
  check(!(await verify(pub, Buffer.concat([good.subarray(0, 32), le(L)]), msg)), "S = L");
  check(!(await verify(pub, Buffer.concat([good.subarray(0, 32), Buffer.alloc(32, 0xff)]), msg)), "S = 2^256 - 1");
  check(await verify(pub, good, msg), "the untouched signature");

  // Our own signing (checked against node:crypto) for mixed-order keys:
  // A' = [a]B + T8. The cofactorless equation [S]B = R + [k]A' holds iff
  // [k]T8 = 0, i.e. k = 0 mod 8; dalek's verify_strict accepts exactly then
  // (A' is not of small order). 16 of each.
  {
    const a = h512(crypto.randomBytes(32)) % L;
    const Aenc = encode(pmul(a, B));
    const m0 = Buffer.from("own signing");
    const { sig } = signWith(a, Aenc, m0);
    const spki = Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Aenc]);
    const key = crypto.createPublicKey({ key: spki, format: "der", type: "spki" });
    check(crypto.verify(null, m0, key, sig), "BigInt signing agrees with node:crypto");
    check(await verify(Aenc, sig, m0), "BigInt-made signature");
    const mixed = encode(padd(pmul(a, B), T8));
    let yes = 0;
    let no = 0;
    for (let i = 0; yes < 16 || no < 16; i++) {
      const m = Buffer.from(`mixed order ${i}`);
      const { sig: s2, k } = signWith(a, mixed, m);
      const expect = k % 8n === 0n;
      if (expect ? yes >= 16 : no >= 16) continue;
      if (expect) yes += 1;
      else no += 1;
      check((await verify(mixed, s2, m)) === expect, `mixed-order A, k mod 8 = ${k % 8n}`);
    }
    // Small-order A or R where the cofactorless equation does hold, so
    // that only the small-order checks reject them:
    //  * A = T (torsion), R = [r]B, S = r: holds iff [k]T = 0;
    //  * R = T, A' = [a]B + T8, S = k a: holds iff T = [-k]T8.
    for (const T of torsion) {
      const Tenc = encode(T);
      for (let i = 0; ; i++) {
        const m = Buffer.from(`small A ${i}`);
        const r = h512(crypto.randomBytes(32)) % L;
        const Renc = encode(pmul(r, B));
        const k = h512(Renc, Tenc, m) % L;
        const kT = pmul(k, T);
        if (!(kT[0] === 0n && kT[1] === 1n)) continue;
        check(!(await verify(Tenc, Buffer.concat([Renc, le(r)]), m)), `small-order A ${Tenc.toString("hex")}, equation holding`);
        break;
      }
      for (let i = 0; ; i++) {
        const m = Buffer.from(`small R ${i}`);
        const k = h512(Tenc, mixed, m) % L;
        const want = pmul(md(-k, 8n), T8);
        if (!(want[0] === T[0] && want[1] === T[1])) continue;
        check(!(await verify(mixed, Buffer.concat([Tenc, le(md(k * a, L))]), m)), `small-order R ${Tenc.toString("hex")}, equation holding`);
        break;
      }
    }
    // Mixed-order R = [r]B + T with S = r + k a: [S]B - [k]A = [r]B != R,
    // so false (a cofactored check would accept); R itself is not small.
    for (const T of [T8, torsion[4], torsion[2]]) {
      for (let i = 0; i < 4; i++) {
        const m = Buffer.from(`mixed R ${i}`);
        const r = h512(crypto.randomBytes(32)) % L;
        const Renc = encode(padd(pmul(r, B), T));
        const k = h512(Renc, Aenc, m) % L;
        const sig2 = Buffer.concat([Renc, le(md(r + k * a, L))]);
        check(!(await verify(Aenc, sig2, m)), "mixed-order R");
      }
    }
  }
  console.log("ed25519: torsion, non-canonical, off-curve, S >= L, mixed-order A and R cases checked");
}

async function gasReport() {
  const msg = crypto.randomBytes(300);
  const gases = [];
  for (let i = 0; i < 25; i++) {
    const { pub, privateKey } = newKey();
    const m = crypto.randomBytes(300);
    const sig = crypto.sign(null, m, privateKey);
    const out = await callVerify("verifyGas(bytes32,bytes32,bytes32,bytes)", pub, sig, m);
    check(BigInt("0x" + out.slice(0, 64)) === 1n, "verifyGas ok");
    gases.push(Number(BigInt("0x" + out.slice(64, 128))));
  }
  gases.sort((x, y) => x - y);
  const sha = await callBytes("sha512Gas(bytes)", msg);
  check(sha.slice(0, 128) === crypto.createHash("sha512").update(msg).digest("hex"), "sha512Gas digest");
  const b3 = await callBytes("blake3Gas(bytes)", msg);
  const b3_4k = await callBytes("blake3Gas(bytes)", pattern(4096));
  check(b3_4k.slice(0, 64) === BLAKE3_VECTORS[4096], "blake3Gas digest");
  console.log(
    `gas: ed25519 verify, 300-byte message: min ${gases[0]} / median ${gases[gases.length >> 1]} / max ${gases[gases.length - 1]}`,
  );
  console.log(`gas: sha512 of 300 bytes ${Number(BigInt("0x" + sha.slice(128, 192)))}`);
  console.log(`gas: blake3 of 300 bytes ${Number(BigInt("0x" + b3.slice(64, 128)))}, of 4096 bytes ${Number(BigInt("0x" + b3_4k.slice(64, 128)))}`);
}

// ---------------------------------------------------------------- main

let anvil;
const stop = () => {
  if (anvil && anvil.exitCode === null) anvil.kill("SIGTERM");
};
process.on("SIGINT", () => {
  stop();
  process.exit(130);
});
process.on("SIGTERM", () => {
  stop();
  process.exit(143);
});

try {
  const { bytecode, deployedSize, selectors } = compile();
  sel = selectors;
  console.log(`CryptoHarness: ${deployedSize} bytes deployed (EIP-170 limit 24576), solc ${solc.version()}`);
  check(deployedSize <= 24576, "CryptoHarness fits EIP-170");
  anvil = await startAnvil();
  const [from] = await rpc("eth_accounts");
  const tx = await rpc("eth_sendTransaction", [{ from, data: bytecode, gas: "0x1c9c380" }]);
  let receipt = null;
  for (let i = 0; i < 100 && !receipt; i++) {
    receipt = await rpc("eth_getTransactionReceipt", [tx]);
    if (!receipt) await new Promise((r) => setTimeout(r, 50));
  }
  if (!receipt || receipt.status !== "0x1") throw new Error("deployment failed");
  harness = receipt.contractAddress;
  await checkSha512();
  await checkBlake3();
  await checkEd25519();
  await gasReport();
} catch (e) {
  console.error(e);
  failed += 1;
} finally {
  stop();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
