#!/usr/bin/env node
/**
 * @module cli/manage-main
 * Stand-alone entry for `gatehouse manage` (tests run it directly; the
 * `gatehouse` command dispatches to the same runManage).
 */
import { runManage } from './manage.js';

process.exit(await runManage(process.argv.slice(2)));
