/** @flowgate/server: the composition root and what embedders and tests need. */
export { createFlowgate, type Flowgate, type FlowgateOptions } from './create-flowgate.js';
export { runServer } from './run-server.js';
export { loadConfig, defaultConfig, ConfigError, type FlowgateConfig } from './config/index.js';
export { VERSION } from './version.js';
