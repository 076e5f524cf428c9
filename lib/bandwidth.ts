/**
 * This machine's memory bandwidth, measured by the addon (native/cpu/memory_bandwidth.h) on its
 * own thread pool: a streaming read (the sum of a large float buffer) and a read + write (one
 * buffer scaled into another), over buffers far larger than any last-level cache, the fastest of
 * a few runs. `fusedpo bench` sets the fused loss against it: the floor of a forward pass is the
 * logits' bytes over the read bandwidth; a backward pass adds them read again and dlogits written.
 */
import * as os from 'node:os';

import { loadAddon, type NativeBandwidthResult } from './native';
import { checkInteger, readArgs } from './validate';

export interface MemoryBandwidthOptions {
  /** Bytes of each of the two buffers (default 512 MiB, or an eighth of memory when less). */
  bytes?: number;
  /** Threads streaming at once, 1 to the thread pool's size (default: its size, setThreads). */
  threads?: number;
  /** Runs of each pass; the fastest counts (default 3). */
  repeats?: number;
}

export type MemoryBandwidth = NativeBandwidthResult;

export const MIN_BANDWIDTH_BYTES = 2 ** 20;
export const DEFAULT_BANDWIDTH_BYTES = 512 * 2 ** 20;

/** The largest buffer the probe takes: two of them stay within a quarter of physical memory. */
export function maxBandwidthBytes(): number {
  return Math.max(MIN_BANDWIDTH_BYTES, Math.floor(os.totalmem() / 8));
}

export function memoryBandwidth(options: MemoryBandwidthOptions = {}): MemoryBandwidth {
  const args = readArgs('memoryBandwidth', options, ['bytes', 'threads', 'repeats'] as const);
  const loaded = loadAddon();
  const addon = loaded.addon;
  if (typeof addon.memoryBandwidth !== 'function') {
    // A binary older than this package (a stale build/, or a CUDA package of an earlier version).
    throw new Error(`memoryBandwidth: the addon loaded (${loaded.path}) has no bandwidth probe: it is older than this package; ` +
      'npx fusedpo build rebuilds the CPU addon, or install the CUDA package of this version');
  }
  const pool = addon.info().threads;
  const bytes = checkInteger('bytes', args.bytes ?? Math.min(DEFAULT_BANDWIDTH_BYTES, maxBandwidthBytes()), MIN_BANDWIDTH_BYTES, maxBandwidthBytes());
  const threads = checkInteger('threads', args.threads ?? pool, 1, pool);
  const repeats = checkInteger('repeats', args.repeats ?? 3, 1, 100);
  return addon.memoryBandwidth({ bytes, threads, repeats });
}
