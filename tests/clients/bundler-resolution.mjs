// Front ends import Apollo Client 3 through a bundler, which resolves `@apollo/client/core` to
// the folder's index.js; Node's ESM loader refuses folder imports. This hook resolves them as a
// bundler does, so the tier runs the README's snippets exactly as written.
import { register } from "node:module";

register("./bundler-resolution-hook.mjs", import.meta.url);
