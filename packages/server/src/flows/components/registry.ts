import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import type { Component } from './component.js';

/** A problem with a node's config, with its place in the definition. */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

/**
 * The components flows may name: the built-in ones and custom modules loaded at start.
 * Each component's config schema is compiled once, when it is registered.
 */
export class ComponentRegistry {
  private readonly components = new Map<string, { component: Component; validate: ValidateFunction }>();
  private readonly ajv = new Ajv2020({ allErrors: true, strict: false, validateFormats: false });

  /** Adds a component; a second one with the same name is refused. */
  register(component: Component<never>): void {
    if (this.components.has(component.name)) throw new Error(`A component called "${component.name}" is registered already.`);
    let validate: ValidateFunction;
    try {
      validate = this.ajv.compile(component.configSchema);
    } catch (error) {
      throw new Error(`The config schema of component "${component.name}" is not valid: ${(error as Error).message}`, { cause: error });
    }
    this.components.set(component.name, { component, validate });
  }

  get(name: string): Component | undefined {
    return this.components.get(name)?.component;
  }

  names(): string[] {
    return [...this.components.keys()].sort();
  }

  /** Checks a config as written in a definition against the component's schema. */
  checkConfig(component: Component, config: unknown, path: string): ConfigProblem[] {
    const entry = this.components.get(component.name);
    if (!entry || entry.validate(config)) return [];
    return (entry.validate.errors ?? []).slice(0, 20).map((e) => {
      const extra = (e.params as { additionalProperty?: unknown; missingProperty?: unknown }).additionalProperty;
      const missing = (e.params as { missingProperty?: unknown }).missingProperty;
      const sub = e.instancePath
        .split('/')
        .slice(1)
        .map((part) => (/^\d+$/.test(part) ? `[${part}]` : `.${part}`))
        .join('');
      if (typeof extra === 'string') return { path: `${path}${sub}.${extra}`, message: 'is not a known property' };
      if (typeof missing === 'string') return { path: `${path}${sub}.${missing}`, message: 'is required' };
      return { path: `${path}${sub}`, message: e.message ?? 'is not valid' };
    });
  }
}
