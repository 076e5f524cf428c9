/**
 * `fusedpo doctor`: what this machine gives fusedpo. Never throws: a binary that does not load
 * is part of the report.
 */
import * as os from 'node:os';

import { loadAddon, type CudaInfo } from './native';
import { version } from './version';

export interface DoctorReport {
  version: string;
  node: string;
  napi: string;
  platform: string;
  /** The binary in use, or null when none loaded (see `error`). */
  binary: { kind: 'cpu' | 'cuda'; path: string } | null;
  error: string | null;
  cpu: { simd: string; features: string; threads: number; availableParallelism: number } | null;
  cuda: { status: string; info: CudaInfo | null };
}

export function doctorReport(): DoctorReport {
  const report: DoctorReport = {
    version,
    node: process.versions.node,
    napi: process.versions.napi ?? 'unknown',
    platform: `${process.platform}-${process.arch}`,
    binary: null,
    error: null,
    cpu: null,
    cuda: { status: 'not checked', info: null },
  };
  try {
    const loaded = loadAddon();
    const info = loaded.addon.info();
    report.binary = { kind: loaded.kind, path: loaded.path };
    report.cpu = {
      simd: info.simd,
      features: info.cpuFeatures,
      threads: info.threads,
      availableParallelism: os.availableParallelism(),
    };
    report.cuda = loaded.kind === 'cuda'
      ? { status: 'in use', info: loaded.cudaInfo }
      : { status: loaded.cudaSkipped ?? 'not used', info: loaded.cudaInfo };
  } catch (error) {
    report.error = (error as Error).message;
  }
  return report;
}

function cudaLines(cuda: DoctorReport['cuda']): string[] {
  const lines = [`CUDA:     ${cuda.status}`];
  const info = cuda.info;
  if (!info) return lines;
  lines.push(`          driver ${info.driverFound ? `found (version ${info.driverVersion})` : 'not found'}, runtime ${info.runtimeVersion}`);
  for (const d of info.devices) {
    lines.push(`          device ${d.index}: ${d.name}, compute capability ${d.computeCapability}, ${(d.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB`);
  }
  if (info.error && !cuda.status.includes(info.error)) lines.push(`          ${info.error}`);
  return lines;
}

export function formatDoctorReport(r: DoctorReport): string {
  const lines = [
    `fusedpo ${r.version}`,
    `Node:     ${r.node} (Node-API ${r.napi}) on ${r.platform}`,
  ];
  if (r.binary) lines.push(`binary:   ${r.binary.kind} addon, ${r.binary.path}`);
  if (r.error) lines.push(`binary:   none loaded`, r.error);
  if (r.cpu) {
    lines.push(`CPU:      kernels use ${r.cpu.simd}; ${r.cpu.threads} threads (${r.cpu.availableParallelism} available)`);
    lines.push(`          features: ${r.cpu.features}`);
  }
  lines.push(...cudaLines(r.cuda));
  return lines.join('\n');
}
