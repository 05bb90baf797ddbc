/**
 * `callscgi --http [HOST:]PORT`: the minimal HTTP front calling the same
 * backend (the full gateway is `gatehouse serve`).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { collect, freePort, httpRequest, spawnTracked, stopProcess, waitForConnectable, waitForExit, waitForPidGone } from '../helpers/peers.js';
import { cliPath } from '../backend/ashd-driver.js';
import { appProgram } from '../backend/support.js';
import { waitUntil } from '../helpers/wait.js';

const children: Array<ReturnType<typeof spawnTracked>> = [];
after(async () => {
  for (const c of children) await stopProcess(c);
});

async function startHttp(cli: 'callscgi' | 'callfcgi', args: string[]): Promise<{ url: string; child: ReturnType<typeof spawnTracked>; logs: ReturnType<typeof collect> }> {
  const port = await freePort();
  const child = spawnTracked(process.execPath, [cliPath(cli), '--http', `127.0.0.1:${port}`, ...args]);
  children.push(child);
  const logs = collect(child);
  await waitForConnectable({ port }, 10000, child);
  return { url: `http://127.0.0.1:${port}`, child, logs };
}

for (const cli of ['callscgi', 'callfcgi'] as const) {
  test(`${cli} --http serves the application over plain HTTP and stops cleanly on SIGTERM`, async () => {
    const { url, child } = await startHttp(cli, appProgram(cli === 'callscgi' ? 'scgi' : 'fastcgi'));
    const get = await httpRequest(`${url}/a/b?x=1`);
    assert.equal(get.status, 200);
    const app = JSON.parse(get.body.toString()) as { pid: number; params: Array<[string, string]> };
    const v = Object.fromEntries(app.params);
    assert.equal(v.REQUEST_URI, '/a/b?x=1');
    assert.equal(v.QUERY_STRING, 'x=1');
    const post = await httpRequest(`${url}/p`, { method: 'POST', body: 'payload', headers: { 'content-type': 'text/plain' } });
    assert.equal(JSON.parse(post.body.toString()).body, 'payload');
    const chunked = await httpRequest(`${url}/c`, { method: 'POST', body: undefined, headers: { 'transfer-encoding': 'chunked' } });
    assert.equal(chunked.status, 200);
    const status = await httpRequest(`${url}/?status=404`);
    assert.equal(status.status, 404);
    child.kill('SIGTERM');
    const exit = await waitForExit(child, 10000);
    assert.equal(exit.code, 0);
    await waitForPidGone(app.pid, 5000);
  });
}

test('callscgi --http answers 503 when the application cannot be reached', async () => {
  const port = await freePort();
  const { url, logs } = await startHttp('callscgi', ['-t', `127.0.0.1:${port}`]);
  const res = await httpRequest(`${url}/`);
  assert.equal(res.status, 503);
  assert.equal(res.body.toString(), 'The application is not available.\n');
  await waitUntil(() => /503: ERR_BACKEND_UNAVAILABLE/.test(logs.stderr()), 5000, 'the 503 to be logged');
});
