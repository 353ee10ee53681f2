#!/usr/bin/env node
/** The `flowgate` command: see program.ts. */
import { processIo } from './io.js';
import { runCli } from './program.js';

process.exitCode = await runCli(process.argv, processIo());
