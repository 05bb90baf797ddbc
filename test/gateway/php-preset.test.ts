// The --root preset's decisions, without a gateway: how long a script check is trusted.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPhpPreset } from '../../src/gateway/php-preset.js';
import { tmpDir } from '../helpers/peers.js';
import { waitUntil } from '../helpers/wait.js';

describe('php preset: script checks', () => {
  it('a script found once is trusted for about a second (as php-cgi trusts its realpath cache), then checked again', async () => {
    const root = tmpDir('gh-preset-');
    writeFileSync(join(root, 'index.php'), '<?php echo 1;');
    const preset = createPhpPreset(root);
    const first = preset.resolve('/index.php');
    assert.equal(first.kind, 'script');
    assert.equal(preset.resolve('/index.php'), first, 'the same decision, from the cache');
    rmSync(join(root, 'index.php'));
    // Within the TTL the removal is not seen yet; once it runs out it is, and nothing stale remains.
    const took = await waitUntil(() => preset.resolve('/index.php').kind === 'refused', 5000, 'the removed script to be noticed');
    assert.ok(took >= 500, `noticed after ${took} ms: the check was not cached`);
    assert.equal(preset.resolve('/index.php').kind, 'refused');
  });

  it('scripts with PATH_INFO and scripts behind a symlink out of the root are never taken from the cache', () => {
    const root = tmpDir('gh-preset-');
    const outside = tmpDir('gh-preset-out-');
    writeFileSync(join(root, 'info.php'), '<?php');
    writeFileSync(join(outside, 'evil.php'), '<?php');
    mkdirSync(join(root, 'sub'));
    const preset = createPhpPreset(root);
    const withInfo = preset.resolve('/info.php/a/b');
    assert.equal(withInfo.kind, 'script');
    assert.notEqual(preset.resolve('/info.php/a/b'), withInfo, 'a PATH_INFO decision is made afresh');
    symlinkSync(join(outside, 'evil.php'), join(root, 'sub', 'evil.php'));
    assert.equal(preset.resolve('/sub/evil.php').kind, 'refused');
    assert.equal(preset.resolve('/sub/evil.php').kind, 'refused', 'a refusal is not cached as a script');
  });
});
