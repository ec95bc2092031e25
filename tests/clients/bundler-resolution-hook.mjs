export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    if (error.code !== "ERR_UNSUPPORTED_DIR_IMPORT") throw error;
    return nextResolve(`${specifier}/index.js`, context);
  }
}
