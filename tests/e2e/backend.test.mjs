// The automatic backend choice (www/backend.js), for the adapters a test machine cannot have:
// a hardware adapter takes WebGPU, a software one or none keeps the CPU, and the reasons say why.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chooseBackend } from '../../www/backend.js';

const hardware = { available: true, adapter: 'NVIDIA H100', fallbackAdapter: false };
const software = { available: true, adapter: 'Google SwiftShader (software)', fallbackAdapter: true };
const none = { available: false, reason: 'this browser has no WebGPU' };

test('auto: WebGPU with a hardware adapter; the CPU with a software adapter or none, saying why', () => {
  assert.deepEqual(chooseBackend('auto', hardware), { backend: 'webgpu', reason: null });
  const soft = chooseBackend('auto', software);
  assert.equal(soft.backend, 'cpu');
  assert.match(soft.reason, /SwiftShader \(software\) is a software WebGPU adapter.*pick WebGPU to use it anyway/);
  assert.deepEqual(chooseBackend('auto', none), { backend: 'cpu', reason: 'WebGPU unavailable: this browser has no WebGPU' });
});

test('an explicit choice is followed: WebGPU on any adapter, the CPU always', () => {
  assert.equal(chooseBackend('webgpu', software).backend, 'webgpu');
  assert.equal(chooseBackend('webgpu', hardware).backend, 'webgpu');
  assert.equal(chooseBackend('webgpu', none).backend, 'cpu');
  assert.deepEqual(chooseBackend('cpu', hardware), { backend: 'cpu', reason: 'CPU chosen' });
});
