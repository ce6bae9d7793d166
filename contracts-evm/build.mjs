// Compiles solidity/ with solcjs (the npm package `solc`, pinned in
// package.json) into artifacts/<Contract>.json: ABI, creation bytecode and
// the compiler settings. The artifacts are committed so a Rust build needs
// no Node; `node build.mjs --check` rebuilds them and fails when a committed
// one differs (CI runs it through tests/it/artifacts.rs).
//
//   node build.mjs           write artifacts/
//   node build.mjs --check   compare, write nothing

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const here = path.dirname(fileURLToPath(import.meta.url));
const sourceDir = path.join(here, "solidity");
const artifactDir = path.join(here, "artifacts");

/// The contracts the Rust side deploys, by source file.
const CONTRACTS = {
  "AgoraEscrow.sol": ["AgoraEscrow"],
  "AgoraTestToken.sol": ["AgoraTestToken"],
  "test/CryptoHarness.sol": ["CryptoHarness"],
};

const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  viaIR: false,
  evmVersion: "cancun",
  // No metadata hash: the bytecode then depends on the sources and these
  // settings alone, not on file paths or comments' IPFS digest.
  metadata: { bytecodeHash: "none", appendCBOR: false },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

function sources() {
  const out = {};
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith(".sol")) {
        out[path.relative(sourceDir, full).split(path.sep).join("/")] = { content: fs.readFileSync(full, "utf8") };
      }
    }
  };
  walk(sourceDir);
  return out;
}

function compile() {
  const input = { language: "Solidity", sources: sources(), settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  for (const e of output.errors ?? []) process.stderr.write(e.formattedMessage + "\n");
  if (errors.length > 0) {
    throw new Error(`solc ${solc.version()}: ${errors.length} error(s)`);
  }
  const artifacts = {};
  for (const [file, names] of Object.entries(CONTRACTS)) {
    for (const name of names) {
      const c = output.contracts?.[file]?.[name];
      if (!c) throw new Error(`${file} has no contract ${name}`);
      artifacts[name] = {
        contractName: name,
        source: `solidity/${file}`,
        compiler: `solc ${solc.version()}`,
        settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion, metadata: SETTINGS.metadata },
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecodeBytes: c.evm.deployedBytecode.object.length / 2,
      };
    }
  }
  return artifacts;
}

const check = process.argv.includes("--check");
const artifacts = compile();
let stale = 0;
for (const [name, artifact] of Object.entries(artifacts)) {
  const file = path.join(artifactDir, `${name}.json`);
  const text = JSON.stringify(artifact, null, 2) + "\n";
  if (check) {
    const committed = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : null;
    if (committed !== text) {
      process.stderr.write(`artifacts/${name}.json differs from what ${artifact.compiler} builds from ${artifact.source}; run \`node build.mjs\`\n`);
      stale += 1;
    } else {
      process.stdout.write(`artifacts/${name}.json matches (${artifact.deployedBytecodeBytes} bytes deployed)\n`);
    }
  } else {
    fs.mkdirSync(artifactDir, { recursive: true });
    fs.writeFileSync(file, text);
    process.stdout.write(`wrote artifacts/${name}.json (${artifact.deployedBytecodeBytes} bytes deployed)\n`);
  }
}
if (stale > 0) process.exit(1);
