/**
 * Configuration: the schema, its defaults, and the loader that reads `flowgate.yaml`
 * and `FLOWGATE_*` variables and names the key of any bad value.
 */
export { ConfigSchema, type FlowgateConfig, type TrustedIssuerConfig } from './config.schema.js';
export { loadConfig, defaultConfig, ConfigError, ENV_KEYS, type DeepPartial, type LoadConfigOptions } from './load-config.js';
