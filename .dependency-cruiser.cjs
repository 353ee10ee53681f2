/**
 * Import rules that keep the architecture honest (STYLE.md practices 7 and 8):
 * - no cycles anywhere;
 * - a feature folder under packages/server/src/<feature>/ is entered only through its
 *   index.ts; files of another feature may not reach into its internals;
 * - the contracts package stays browser-safe: no Node built-ins, no server code;
 * - production code never imports tests.
 */
const FEATURES = '(kernel|iam|gateway|bus|flows|data|maps|sessions|audit|secrets|outbound|storage|config|http|errors|observability|cli)';

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Cycles make modules impossible to load, test or replace alone.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'feature-public-face',
      severity: 'error',
      comment: 'Other features import a feature only through its index.ts.',
      from: { path: `^packages/server/src/([^/]+)/` },
      to: {
        path: `^packages/server/src/${FEATURES}/.+`,
        pathNot: [`^packages/server/src/$1/`, `^packages/server/src/${FEATURES}/index\\.ts$`],
      },
    },
    {
      name: 'root-uses-public-faces',
      severity: 'error',
      comment: 'The composition root and main wire features through their public faces.',
      from: { path: '^packages/server/src/[^/]+\\.ts$' },
      to: {
        path: `^packages/server/src/${FEATURES}/.+`,
        pathNot: `^packages/server/src/${FEATURES}/index\\.ts$`,
      },
    },
    {
      name: 'contracts-browser-safe',
      severity: 'error',
      comment: 'The contracts package is shared with the web UI: no Node built-ins, no server code.',
      from: { path: '^packages/contracts/' },
      to: { dependencyTypes: ['core'] },
    },
    {
      name: 'contracts-no-server',
      severity: 'error',
      from: { path: '^packages/contracts/' },
      to: { path: '^packages/server/' },
    },
    {
      name: 'no-test-imports-in-src',
      severity: 'error',
      from: { path: '^packages/[^/]+/src/' },
      to: { path: '(^packages/[^/]+/test/|\\.test\\.ts$)' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(/dist/|node_modules)' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.eslint.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs'],
    },
  },
};
