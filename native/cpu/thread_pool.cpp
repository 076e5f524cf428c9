// The thread pool behind parallelFor (see thread_pool.h). One job at a time: the caller
// publishes (task, context, count, chunks) under the mutex and bumps the generation; each
// worker k runs chunk k + 1, and the caller runs chunk 0 and then waits for the others.
//
// A chunk that throws (std::bad_alloc from a kernel's scratch, say) never escapes its thread,
// which would end the process: the first exception of a job is kept, the other chunks finish,
// and run() rethrows it on the calling thread, where the bindings turn it into an Error.
#include "thread_pool.h"

#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "../core/preference_loss.h"

namespace fusedpo::cpu {
namespace {

thread_local bool insideChunk = false;

class ThreadPool {
 public:
  int threads() {
    std::lock_guard<std::mutex> job(jobMutex_);
    return int(workers_.size()) + 1;
  }

  void resize(int threads) {
    if (threads < 1) threads = 1;
    std::lock_guard<std::mutex> job(jobMutex_);
    if (int(workers_.size()) + 1 == threads) return;
    stopWorkers();
    // No job runs while jobMutex_ is held, so a new worker starts at the current generation.
    const uint64_t generation = generation_;
    for (int k = 0; k + 1 < threads; ++k) {
      try {
        workers_.emplace_back([this, k, generation] { workerLoop(k, generation); });
      } catch (...) {
        break;  // no more threads to be had: run with those we have
      }
    }
  }

  void run(int64_t count, RangeTask task, void* context) {
    if (count <= 0) return;
    if (insideChunk) {
      task(context, 0, count);  // an exception goes up to the chunk that called in
      return;
    }
    std::lock_guard<std::mutex> job(jobMutex_);
    const int64_t threads = int64_t(workers_.size()) + 1;
    const int64_t chunks = count < threads ? count : threads;
    if (chunks == 1) {
      runChunk(task, context, 0, count);
      rethrowFailure();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = task;
      context_ = context;
      count_ = count;
      chunks_ = chunks;
      pending_ = chunks - 1;
      ++generation_;
    }
    wake_.notify_all();
    runChunk(task, context, 0, count / chunks);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return pending_ == 0; });
    }
    rethrowFailure();
  }

 private:
  // Runs one chunk; an exception is kept (the first of the job), never let out of the thread.
  void runChunk(RangeTask task, void* context, int64_t begin, int64_t end) {
    insideChunk = true;
    try {
      task(context, begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(failureMutex_);
      if (!failure_) failure_ = std::current_exception();
    }
    insideChunk = false;
  }

  // Called with jobMutex_ held, once every chunk of the job is done.
  void rethrowFailure() {
    std::exception_ptr failure;
    {
      std::lock_guard<std::mutex> lock(failureMutex_);
      std::swap(failure, failure_);
    }
    if (failure) std::rethrow_exception(failure);
  }

  void workerLoop(int index, uint64_t seen) {
    for (;;) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      const int64_t chunk = index + 1;
      if (chunk >= chunks_) continue;
      const RangeTask task = task_;
      void* const context = context_;
      const int64_t begin = count_ * chunk / chunks_, end = count_ * (chunk + 1) / chunks_;
      lock.unlock();
      runChunk(task, context, begin, end);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  // Called with jobMutex_ held, so no job is running.
  void stopWorkers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = false;
  }

  std::mutex jobMutex_;  // held for a whole job or resize
  std::mutex failureMutex_;
  std::exception_ptr failure_;  // the first exception of the running job
  std::mutex mutex_;     // guards the fields below
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  RangeTask task_ = nullptr;
  void* context_ = nullptr;
  int64_t count_ = 0, chunks_ = 1, pending_ = 0;
};

ThreadPool& pool() {
  static ThreadPool* const instance = new ThreadPool();  // never destroyed: see thread_pool.h
  return *instance;
}

}  // namespace

void parallelFor(int64_t count, RangeTask task, void* context) { pool().run(count, task, context); }

}  // namespace fusedpo::cpu

namespace fusedpo {

void setThreadCount(int threads) { cpu::pool().resize(threads); }

int threadCount() { return cpu::pool().threads(); }

}  // namespace fusedpo
