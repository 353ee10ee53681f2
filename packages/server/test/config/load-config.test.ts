/**
 * The configuration loader: defaults, then `flowgate.yaml`, then `FLOWGATE_*`
 * variables; every bad value is reported under the name the operator wrote it with.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, defaultConfig, loadConfig } from '../../src/config/load-config.js';

let cwd: string;

beforeEach(() => {
  cwd = mkdtempSync(join(tmpdir(), 'flowgate-config-'));
});

afterEach(() => {
  rmSync(cwd, { recursive: true, force: true });
});

/** Runs `loadConfig` expecting it to fail, and returns the {@link ConfigError}. */
function expectConfigError(env: Record<string, string | undefined>): ConfigError {
  let caught: unknown;
  try {
    loadConfig({ env, cwd });
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  const error = caught as ConfigError;
  expect(error.code).toBe('FLOWGATE_ERR_CONFIG_INVALID');
  return error;
}

function writeYaml(text: string, name = 'flowgate.yaml'): string {
  const file = join(cwd, name);
  writeFileSync(file, text);
  return file;
}

describe('loadConfig', () => {
  describe('defaults', () => {
    it('with no file and no variables, listens on 127.0.0.1:8080 and keeps data in ./data', () => {
      const config = loadConfig({ env: {}, cwd });
      expect(config.server.port).toBe(8080);
      expect(config.server.host).toBe('127.0.0.1');
      expect(config.dataDir).toBe(join(cwd, 'data'));
    });

    it('fills nested defaults', () => {
      const config = loadConfig({ env: {}, cwd });
      expect(config.iam.accessTokenTtl).toBe(900);
      expect(config.iam.throttle).toEqual({ maxFailures: 5, windowSeconds: 900, lockSeconds: 60 });
      expect(config.iam.trustedIssuers).toEqual([]);
      expect(config.database.url).toBeUndefined();
      expect(config.log.level).toBe('info');
    });

    it('ignores variables that are not Flowgate settings', () => {
      expect(loadConfig({ env: { PATH: '/usr/bin', HOME: '/root', PORT: 'abc' }, cwd }).server.port).toBe(8080);
    });

    it('ignores the variables of the flowgate CLI', () => {
      const config = loadConfig({
        env: { FLOWGATE_URL: 'not a url', FLOWGATE_TOKEN: 'tok', FLOWGATE_CLIENT_ID: 'id', FLOWGATE_CLIENT_SECRET: 's' },
        cwd,
      });
      expect(config.server.port).toBe(8080);
    });
  });

  describe('variables', () => {
    it('applies FLOWGATE_* variables', () => {
      const config = loadConfig({
        env: { FLOWGATE_PORT: '9000', FLOWGATE_HOST: '0.0.0.0', FLOWGATE_DATA_DIR: '/var/lib/flowgate', FLOWGATE_LOG_LEVEL: 'debug' },
        cwd,
      });
      expect(config.server).toMatchObject({ port: 9000, host: '0.0.0.0' });
      expect(config.dataDir).toBe('/var/lib/flowgate');
      expect(config.log.level).toBe('debug');
    });

    it('resolves a relative data folder against the working folder', () => {
      expect(loadConfig({ env: { FLOWGATE_DATA_DIR: 'state' }, cwd }).dataDir).toBe(join(cwd, 'state'));
    });

    it('a port that is not a number names FLOWGATE_PORT', () => {
      const error = expectConfigError({ FLOWGATE_PORT: 'abc' });
      expect(error.message).toContain('FLOWGATE_PORT');
      expect(error.problems).toHaveLength(1);
    });

    it('a port out of range names FLOWGATE_PORT', () => {
      const error = expectConfigError({ FLOWGATE_PORT: '70000' });
      expect(error.message).toContain('FLOWGATE_PORT');
      expect(error.problems).toHaveLength(1);
    });

    it('an unknown FLOWGATE_ variable is named', () => {
      const error = expectConfigError({ FLOWGATE_FOO: 'bar' });
      expect(error.message).toContain('FLOWGATE_FOO');
    });

    it('reports every bad variable at once', () => {
      const error = expectConfigError({ FLOWGATE_FOO: 'x', FLOWGATE_PORT: 'abc' });
      expect(error.problems).toHaveLength(2);
      expect(error.message).toContain('FLOWGATE_FOO');
      expect(error.message).toContain('FLOWGATE_PORT');
    });

    it('a bad bootstrap secret is named without echoing its value', () => {
      const error = expectConfigError({ FLOWGATE_BOOTSTRAP_CLIENT_SECRET: 'short' });
      expect(error.message).toContain('FLOWGATE_BOOTSTRAP_CLIENT_SECRET');
      expect(error.message).not.toContain('short');
    });

    it('a bad database URL names FLOWGATE_DATABASE_URL', () => {
      const error = expectConfigError({ FLOWGATE_DATABASE_URL: 'mysql://db' });
      expect(error.message).toContain('FLOWGATE_DATABASE_URL');
    });

    it('a NATS prefix that cannot name a stream names FLOWGATE_BUS_PREFIX', () => {
      const error = expectConfigError({ FLOWGATE_BUS_URL: 'nats://127.0.0.1:4222', FLOWGATE_BUS_PREFIX: 'Prod.East' });
      expect(error.message).toContain('FLOWGATE_BUS_PREFIX');
    });
  });

  describe('the YAML file', () => {
    it('applies flowgate.yaml from the working folder', () => {
      writeYaml('server:\n  port: 9090\n');
      const config = loadConfig({ env: {}, cwd });
      expect(config.server.port).toBe(9090);
      expect(config.server.host).toBe('127.0.0.1');
    });

    it('a variable overrides the file', () => {
      writeYaml('server:\n  port: 9090\n  host: 0.0.0.0\n');
      const config = loadConfig({ env: { FLOWGATE_PORT: '9191' }, cwd });
      expect(config.server.port).toBe(9191);
      expect(config.server.host).toBe('0.0.0.0');
    });

    it('reads the file FLOWGATE_CONFIG names', () => {
      writeYaml('server:\n  port: 7070\n', 'other.yaml');
      expect(loadConfig({ env: { FLOWGATE_CONFIG: 'other.yaml' }, cwd }).server.port).toBe(7070);
    });

    it('an empty file changes nothing', () => {
      writeYaml('');
      expect(loadConfig({ env: {}, cwd }).server.port).toBe(8080);
    });

    it('an unknown key names its dotted path and the file', () => {
      const file = writeYaml('server:\n  prot: 9090\n');
      const error = expectConfigError({});
      expect(error.message).toContain('server.prot');
      expect(error.message).toContain(file);
    });

    it('an unknown top-level key is named', () => {
      writeYaml('sever:\n  port: 9090\n');
      expect(expectConfigError({}).message).toContain('sever');
    });

    it('a bad value in the file names its dotted path and the file', () => {
      const file = writeYaml('server:\n  port: high\n');
      const error = expectConfigError({});
      expect(error.message).toContain('server.port');
      expect(error.message).toContain(file);
    });

    it('a bad secret in the file is named without echoing its value', () => {
      writeYaml('iam:\n  bootstrap:\n    clientSecret: hunter2\n');
      const error = expectConfigError({});
      expect(error.message).toContain('iam.bootstrap.clientSecret');
      expect(error.message).not.toContain('hunter2');
    });

    it('invalid YAML is reported with the file', () => {
      const file = writeYaml('server:\n  port: [9090\n');
      const error = expectConfigError({});
      expect(error.message).toContain(file);
      expect(error.message).toContain('not valid YAML');
    });

    it('a file whose top level is not a mapping is reported', () => {
      const file = writeYaml('- 1\n- 2\n');
      const error = expectConfigError({});
      expect(error.message).toContain(file);
      expect(error.message).toContain('mapping');
    });

    it('a FLOWGATE_CONFIG file that does not exist is reported', () => {
      const error = expectConfigError({ FLOWGATE_CONFIG: 'missing.yaml' });
      expect(error.message).toContain('FLOWGATE_CONFIG');
      expect(error.message).toContain(join(cwd, 'missing.yaml'));
    });
  });
});

describe('defaultConfig', () => {
  it('gives the defaults plus the overrides', () => {
    const config = defaultConfig({ server: { port: 0 } });
    expect(config.server).toMatchObject({ port: 0, host: '127.0.0.1' });
    expect(config.iam.audience).toBe('flowgate');
  });

  it('refuses an invalid override', () => {
    expect(() => defaultConfig({ server: { port: -1 } })).toThrow(ConfigError);
  });
});
