/**
 * The package is usable as a package: another project that runs
 * `npm i /path/to/checkout` can import from 'gatehouse' with types, and the
 * bin entries run with plain node.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tmpDir } from '../helpers/peers.js';

test('another project can npm-install the checkout and import typed exports', { timeout: 120_000 }, () => {
  const dir = tmpDir('gh-consumer-');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', type: 'module', private: true }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', repoRoot], { cwd: dir, stdio: 'pipe' });
  writeFileSync(
    join(dir, 'main.ts'),
    `import { createServer, fastcgi, ProcManager, createGateway, cgiParamsFromHttp } from 'gatehouse';
import type { ServerOptions } from 'gatehouse';
const opts: ServerOptions = { protocol: 'fastcgi' };
const server = createServer((_req, res) => res.end('ok'), opts);
const rec: Buffer = fastcgi.encodeRecord(fastcgi.RecordType.STDOUT, 1, Buffer.from('x'));
console.log(typeof server.listen, rec.length, typeof ProcManager, typeof createGateway, typeof cgiParamsFromHttp);
`,
  );
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, outDir: 'out',
        types: ['node'], typeRoots: [join(repoRoot, 'node_modules', '@types')], skipLibCheck: true,
      },
      files: ['main.ts'],
    }),
  );
  const tsc = spawnSync(process.execPath, [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { encoding: 'utf8' });
  assert.equal(tsc.status, 0, `tsc failed:\n${tsc.stdout}${tsc.stderr}`);
  const run = spawnSync(process.execPath, [join(dir, 'out', 'main.js')], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), 'function 16 function function function');
});

test('bin entries run with plain node and print usage', () => {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  for (const [name, rel] of Object.entries(pkg.bin)) {
    const r = spawnSync(process.execPath, [join(repoRoot, rel), '-h'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, `${name} -h exited ${r.status}: ${r.stderr}`);
    assert.match(r.stdout, /usage:/i, `${name} -h printed no usage`);
    const bad = spawnSync(process.execPath, [join(repoRoot, rel), '--no-such-flag'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(bad.status, 2, `${name} with a bad flag exited ${bad.status}, want 2`);
    assert.match(bad.stderr, /usage:/i);
  }
});
