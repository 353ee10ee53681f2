import type { GatewayRoute } from '@flowgate/contracts';

const NONE_ALLOWED: NonNullable<GatewayRoute['allowInPaths']> = [];

/**
 * Why an upstream could read a raw path as another path than the one routed, if it could:
 * a segment it could resolve as `.` or `..` (separators include `\` for WHATWG URL parsers,
 * and encoded slashes; `;params` cut off first), an empty segment (collapsed by Tomcat and
 * others), `;params` (dropped by Tomcat and Jetty), or an encoded or back slash (decoded
 * into a separator by some). Each could take a request routed by a broad open route to
 * what a narrower protected route guards. A route may allow all but dot segments.
 */
export function pathAmbiguity(path: string, allowed: GatewayRoute['allowInPaths'] = NONE_ALLOWED): string | undefined {
  // Every spelling needs one of these characters: most paths are done here.
  if (!/[.%;\\]|\/\//.test(path)) return undefined;
  const dots = path.replace(/%2e/gi, '.');
  const separators = dots.replace(/%2f|%5c|\\/gi, '/');
  const dotted = separators.split('/').some((segment) => {
    const name = segment.split(';')[0];
    return name === '.' || name === '..';
  });
  if (dotted) return 'The path may not contain . or .. segments.';
  if (path.includes('//') && !allowed.includes('empty-segments')) return 'The path may not contain an empty segment (//).';
  if (path.includes(';') && !allowed.includes('parameters')) return 'The path may not contain ;parameters.';
  if (separators !== dots && !allowed.includes('encoded-slashes')) return 'The path may not contain an encoded slash or a backslash.';
  return undefined;
}

/** The path without its first `count` segments (a route's strip-prefix); `/` when none is left. */
export function stripSegments(path: string, count: number | undefined): string {
  if (count === undefined) return path;
  let at = 0;
  for (let i = 0; i < count; i++) {
    const next = path.indexOf('/', at + 1);
    if (next === -1) return '/';
    at = next;
  }
  return path.slice(at);
}
