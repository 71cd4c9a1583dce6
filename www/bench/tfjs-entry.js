// The benchmark's peer, bundled by scripts/bench.mjs into www/vendor/tfjs.js (npm's TensorFlow.js
// packages ship Node-only imports in their ES builds, so the page cannot load them unbundled).
export * from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients'; // tf.grad's rules (the tfjs umbrella package does this)
export { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
