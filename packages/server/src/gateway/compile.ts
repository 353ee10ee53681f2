import { GatewayConfigSchema, GATEWAY_METHODS, reservedPrefixOf, type GatewayConfig, type GatewayRoute, type GatewayService, type Policies, type PolicyName } from '@flowgate/contracts';
import { Ajv } from 'ajv';
import FindMyWay from 'find-my-way';
import { shapeProblems } from '../errors/index.js';
import type { ConfigProblem } from './config-store.js';
import { POLICY_FACTORIES, PolicyOptionError, type PolicyDeps, type PolicyStep } from './policies/index.js';

/** A route ready to serve: its policy steps in order, and its service's name. */
export interface CompiledRoute {
  readonly spec: GatewayRoute;
  readonly service: string;
  readonly steps: readonly PolicyStep[];
}

/** What the router stores per path: the route, and the prefix to strip from that path. */
export interface RouteMatch {
  readonly route: CompiledRoute;
  /** Leading path segments removed before forwarding. */
  readonly strip: number | undefined;
  /**
   * Registered only so that the route's `cors` policy answers preflights: `OPTIONS` is
   * not among the route's methods, so any other OPTIONS request is not this route's.
   */
  readonly preflightOnly: boolean;
}

export type Router = FindMyWay.Instance<FindMyWay.HTTPVersion.V1>;

/** A configuration compiled for serving, or the problems that keep it from being served. */
export interface CompiledConfig {
  readonly router: Router;
  readonly routes: ReadonlyMap<string, CompiledRoute>;
  readonly services: ReadonlyMap<string, GatewayService>;
}

const validateShape = new Ajv({ allErrors: true, strict: false }).compile<GatewayConfig>(GatewayConfigSchema);

/**
 * Checks a configuration and compiles it: shapes, names, references, reserved paths,
 * path conflicts, and each policy's options (its factory runs here, so a bad option is
 * found when the configuration is applied, never on a request). Returns the problems,
 * or the compiled configuration when there are none.
 */
export function compileConfig(input: unknown, deps: PolicyDeps): { problems: ConfigProblem[]; compiled?: CompiledConfig } {
  if (!validateShape(input)) {
    return { problems: shapeProblems(validateShape.errors) };
  }
  const config = input;
  const problems: ConfigProblem[] = [];
  const services = new Map<string, GatewayService>();
  const serviceIndex = new Map<string, number>();
  config.services.forEach((service, i) => {
    if (services.has(service.name)) problems.push({ path: `services[${i}].name`, message: `"${service.name}" is used by another service` });
    services.set(service.name, service);
    serviceIndex.set(service.name, i);
    service.targets.forEach((target, t) => {
      const problem = targetProblem(target);
      if (problem) problems.push({ path: `services[${i}].targets[${t}]`, message: problem });
    });
  });

  const router: Router = FindMyWay({ ignoreTrailingSlash: false, caseSensitive: true, maxParamLength: 500 });
  const routes = new Map<string, CompiledRoute>();
  config.routes.forEach((route, i) => {
    const at = `routes[${i}]`;
    if (routes.has(route.name)) problems.push({ path: `${at}.name`, message: `"${route.name}" is used by another route` });
    const service = services.get(route.service);
    if (!service) {
      problems.push({ path: `${at}.service`, message: `there is no service "${route.service}"` });
      return;
    }
    const params = new Set<string>();
    route.paths.forEach((path, p) => {
      const reserved = reservedPrefixOf(path);
      if (reserved) problems.push({ path: `${at}.paths[${p}]`, message: `${path} is under ${reserved}, which is reserved for Flowgate itself` });
      else if (/(^|\/)\.\.?(\/|$)/.test(path)) problems.push({ path: `${at}.paths[${p}]`, message: 'a path may not contain . or .. segments' });
      for (const m of path.matchAll(/:([A-Za-z0-9_]+)/g)) params.add(m[1] ?? '');
      if (path.endsWith('*')) params.add('*');
    });
    const steps = compilePolicies(route, service, params, deps, at, `services[${serviceIndex.get(service.name)}]`, problems);
    const compiled: CompiledRoute = { spec: route, service: service.name, steps };
    routes.set(route.name, compiled);
    registerPaths(router, compiled, (route.policies?.cors ?? service.policies?.cors) !== undefined, at, problems);
  });
  if (problems.length > 0) return { problems };
  return { problems, compiled: { router, routes, services } };
}

function targetProblem(target: string): string | undefined {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return `"${target}" is not a URL`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'a target must be an http or https URL';
  if (url.username || url.password) return 'a target URL may not hold credentials; use an upstream-auth policy';
  if (url.search || url.hash) return 'a target URL may not have a query or fragment';
  return undefined;
}

/** The route's policies over its service's (the route's win), each validated and built. */
function compilePolicies(
  route: GatewayRoute,
  service: GatewayService,
  params: ReadonlySet<string>,
  deps: PolicyDeps,
  routeAt: string,
  serviceAt: string,
  problems: ConfigProblem[],
): PolicyStep[] {
  const merged: Array<{ name: PolicyName; options: unknown; at: string }> = [];
  const own: Policies = route.policies ?? {};
  const inherited: Policies = service.policies ?? {};
  for (const name of Object.keys(POLICY_FACTORIES) as PolicyName[]) {
    if (own[name] !== undefined) merged.push({ name, options: own[name], at: `${routeAt}.policies.${name}` });
    else if (inherited[name] !== undefined) merged.push({ name, options: inherited[name], at: `${serviceAt}.policies.${name}` });
  }
  const auth = merged.find((p) => p.name === 'auth')?.options as Policies['auth'];
  const anonymous = auth?.type === 'none';
  if (!auth) {
    problems.push({ path: `${routeAt}.policies`, message: `route "${route.name}" has no auth policy; set auth: {type: none} on it or its service to make it public on purpose` });
  }
  for (const { name, options, at } of merged) {
    if (anonymous && name === 'scopes') problems.push({ path: at, message: 'scopes need an auth policy other than none' });
    const upstream = name === 'upstream-auth' ? (options as NonNullable<Policies['upstream-auth']>) : undefined;
    if (anonymous && upstream?.mode === 'mint-jwt') problems.push({ path: at, message: 'mint-jwt needs an authenticated caller: an auth policy other than none' });
    if (anonymous && upstream?.mode === 'secret-header' && (upstream.tenant === undefined || !upstream.shared)) {
      problems.push({ path: `${at}.tenant`, message: "with auth none there is no caller's tenant: name the secret's tenant and set shared: true" });
    }
  }
  const steps: Array<{ order: number; step: PolicyStep }> = [];
  for (const { name, options, at } of merged) {
    const factory = POLICY_FACTORIES[name];
    try {
      steps.push({ order: factory.order, step: factory.create(options as never, { route, service, params }, deps) });
    } catch (err) {
      if (!(err instanceof PolicyOptionError)) throw err;
      problems.push({ path: err.at ? `${at}.${err.at}` : at, message: `${err.message}${at.startsWith('services') ? ` (on route "${route.name}")` : ''}` });
    }
  }
  return steps.sort((a, b) => a.order - b.order).map((s) => s.step);
}

function registerPaths(router: Router, route: CompiledRoute, cors: boolean, at: string, problems: ConfigProblem[]): void {
  const spec = route.spec;
  const methods = new Set<string>(spec.methods ?? GATEWAY_METHODS);
  if (methods.has('GET')) methods.add('HEAD');
  // A browser's preflight is an OPTIONS request: a route with CORS answers it, and only
  // it when the route does not list OPTIONS.
  const preflightOnly = cors && !methods.has('OPTIONS');
  if (preflightOnly) methods.add('OPTIONS');
  const constraints = spec.hosts ? spec.hosts.map((host) => hostConstraint(host)) : [undefined];
  spec.paths.forEach((path, p) => {
    const strip = stripFor(spec.stripPrefix, path);
    if (typeof spec.stripPrefix === 'string' && strip === undefined) {
      problems.push({ path: `${at}.stripPrefix`, message: `${spec.stripPrefix} is not a prefix of the path ${path}` });
    }
    const match: RouteMatch = { route, strip, preflightOnly: false };
    const preflight: RouteMatch = { route, strip, preflightOnly: true };
    for (const constraint of constraints) {
      for (const method of methods) {
        try {
          const options = constraint ? { constraints: { host: constraint } } : {};
          router.on(method as FindMyWay.HTTPMethod, path, options, noop, preflightOnly && method === 'OPTIONS' ? preflight : match);
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          const conflict = /already declared/i.test(message);
          problems.push({ path: `${at}.paths[${p}]`, message: conflict ? `${method} ${path} is already served by another route` : `${path} is not a valid path pattern: ${message}` });
          return;
        }
      }
    }
  });
}

const noop = () => undefined;

function hostConstraint(host: string): string | RegExp {
  const lower = host.toLowerCase();
  if (!lower.startsWith('*.')) return lower;
  return new RegExp(`^[^.]+${lower.slice(1).replaceAll('.', '\\.')}$`);
}

/**
 * How many leading path segments are removed before forwarding a request matched by
 * `path`. Counting segments (not comparing text) also strips a percent-encoded form of
 * the prefix, which the router matched after decoding.
 */
function stripFor(option: GatewayRoute['stripPrefix'], path: string): number | undefined {
  if (option === undefined || option === false) return undefined;
  const segments = path.split('/').slice(1);
  if (typeof option === 'string') {
    const prefix = option.replace(/\/+$/, '');
    if (!(path === prefix || path.startsWith(`${prefix}/`))) return undefined;
    return prefix.split('/').length - 1;
  }
  const dynamic = segments.findIndex((segment) => segment.includes(':') || segment.includes('*'));
  const count = dynamic === -1 ? segments.length : dynamic;
  return count === 0 ? undefined : count;
}
