// Interrupts of a training run: the first SIGINT or SIGTERM asks the run to stop at its next step
// boundary (after a checkpoint); a second one stops the process at once.
//
// Why in native code: a training step runs on the main thread for seconds at real sizes, and
// Node runs a JavaScript signal listener only when the main thread returns to the event loop.
// With a listener alone, Ctrl-C would print nothing until the step ends, and a second Ctrl-C
// could not stop anything. The handler here runs in the signal's context: it records the signal
// (read at the next step boundary with interruptSignal()), writes the caller's message on stderr
// at once (write(2) is async-signal-safe), and on a second signal puts the previous disposition
// back (Node's own handler, which resets the terminal and dies of the signal) and re-sends it.
//
// A signal that was ignored when watching began (nohup, a background job) stays ignored. POSIX
// only: watchInterrupts returns false elsewhere, and lib/train/interrupt.ts falls back to
// JavaScript listeners.
#pragma once

#include <cstddef>

namespace fusedpo::cpu {

// Installs the handler for SIGINT and SIGTERM, with `message` (copied, at most 1023 bytes) to
// write on the first signal. Clears any signal recorded before. False where signals are not POSIX.
bool watchInterrupts(const char* message, std::size_t length);

// Puts back the dispositions that watchInterrupts replaced (a no-op when not watching).
void unwatchInterrupts();

// The first signal received since watchInterrupts (SIGINT = 2, SIGTERM = 15), or 0.
int interruptSignal();

}  // namespace fusedpo::cpu
