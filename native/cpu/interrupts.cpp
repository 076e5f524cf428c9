// See interrupts.h. Only async-signal-safe calls inside the handler: an atomic exchange,
// write(2), sigaction(2) and kill(2).
#include "cpu/interrupts.h"

#include <atomic>
#include <cstring>

#if defined(_WIN32)

namespace fusedpo::cpu {
bool watchInterrupts(const char*, std::size_t) { return false; }
void unwatchInterrupts() {}
int interruptSignal() { return 0; }
}  // namespace fusedpo::cpu

#else

#include <csignal>
#include <mutex>
#include <unistd.h>

namespace fusedpo::cpu {
namespace {

constexpr int kSignals[] = {SIGINT, SIGTERM};
constexpr int kSignalCount = 2;

std::atomic<int> received{0};
char message[1024];
std::size_t messageLength = 0;
// The dispositions replaced, restored by unwatchInterrupts or by a second signal.
struct sigaction previous[kSignalCount];
bool installed[kSignalCount] = {false, false};
std::mutex watchMutex;  // watch and unwatch from two threads at once

void restore(int index) {
  if (installed[index]) sigaction(kSignals[index], &previous[index], nullptr);
  installed[index] = false;
}

extern "C" void onInterrupt(int signo) {
  int none = 0;
  if (received.compare_exchange_strong(none, signo)) {
    if (messageLength > 0) {
      ssize_t written = write(STDERR_FILENO, message, messageLength);
      (void)written;  // nothing to do if stderr is gone
    }
    return;
  }
  // The second signal: the previous dispositions back, then this signal again. It is blocked
  // while this handler runs, so it is delivered, to the previous handler, when this one returns.
  for (int i = 0; i < kSignalCount; i++) restore(i);
  kill(getpid(), signo);
}

}  // namespace

bool watchInterrupts(const char* text, std::size_t length) {
  std::lock_guard<std::mutex> lock(watchMutex);
  for (int i = 0; i < kSignalCount; i++) restore(i);
  messageLength = length < sizeof message ? length : sizeof message - 1;
  std::memcpy(message, text, messageLength);
  received.store(0);
  for (int i = 0; i < kSignalCount; i++) {
    struct sigaction current;
    if (sigaction(kSignals[i], nullptr, &current) != 0) continue;
    if (!(current.sa_flags & SA_SIGINFO) && current.sa_handler == SIG_IGN) continue;  // ignored: stays so
    struct sigaction action;
    std::memset(&action, 0, sizeof action);
    action.sa_handler = onInterrupt;
    sigemptyset(&action.sa_mask);
    for (int signal : kSignals) sigaddset(&action.sa_mask, signal);  // one handler at a time
    action.sa_flags = SA_RESTART;
    if (sigaction(kSignals[i], &action, &previous[i]) == 0) installed[i] = true;
  }
  return true;
}

void unwatchInterrupts() {
  std::lock_guard<std::mutex> lock(watchMutex);
  for (int i = 0; i < kSignalCount; i++) restore(i);
}

int interruptSignal() { return received.load(); }

}  // namespace fusedpo::cpu

#endif
