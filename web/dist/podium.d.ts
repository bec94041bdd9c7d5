export * from "./types/index.js";
export { default } from "./types/index.js";
