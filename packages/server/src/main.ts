#!/usr/bin/env node
/** `npm start`: the whole hub in one process, configured from flowgate.yaml and FLOWGATE_* variables. */
import { runServer } from './run-server.js';

await runServer(process.env, process.cwd());
