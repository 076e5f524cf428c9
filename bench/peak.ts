/**
 * This machine's peak FP32 FMA throughput (bench/peak/fma_peak.c, built with the system's gcc and
 * run now), for the FLOP floors of bench/train.ts and bench/matmul.ts: GFLOP/s per ISA at 1 thread
 * and at `threads` threads. null (with the reason printed) when gcc or OpenMP is missing.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface PeakLine { isa: 'avx512' | 'avx2'; threads: number; gflops: number }

export function measurePeak(threads: number, log: (line: string) => void = console.log): PeakLine[] | null {
  const binary = path.join(os.tmpdir(), `fusedpo-fma-peak-${process.pid}`);
  try {
    execFileSync('gcc', ['-O3', '-fopenmp', path.join(__dirname, 'peak', 'fma_peak.c'), '-o', binary]);
    const out = execFileSync(binary, [String(threads)], { encoding: 'utf8' });
    return out.trim().split('\n').map((line) => JSON.parse(line) as PeakLine);
  } catch (error) {
    log(`peak: skipped, could not build or run bench/peak/fma_peak.c: ${(error as Error).message.split('\n')[0]}`);
    return null;
  } finally {
    fs.rmSync(binary, { force: true });
  }
}

/** The peak of the ISA the kernels use (`simd`: avx512, avx2, generic: the widest the CPU has then). */
export function peakFor(lines: PeakLine[] | null, simd: string, threads: number): number | null {
  if (!lines) return null;
  const isa = simd === 'avx512' ? 'avx512' : 'avx2';
  return lines.find((l) => l.isa === isa && l.threads === threads)?.gflops ?? null;
}
