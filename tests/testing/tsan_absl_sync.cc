// Linked into every binary of the ThreadSanitizer build only
// (AQUEDUCT_TSAN, scripts/test.sh), never into a shipped binary.
//
// Why it exists: Debian's Abseil is not built with -fsanitize=thread, so
// ThreadSanitizer cannot see absl::Mutex, absl::CondVar or
// absl::Notification synchronize (Abseil only annotates itself when it is
// compiled with the sanitizer). Every access guarded by one of them would
// then be reported as a race. This file defines those entry points in the
// executable, which the dynamic linker then prefers for every caller
// (our code, and gRPC's own locks in libgrpc, which are absl::Mutex too;
// the binary is linked with -rdynamic so the libraries see them): each
// tells ThreadSanitizer what the call does to the lock (the
// __tsan_mutex_* annotations, the same ones Abseil emits when it is
// instrumented) and then calls Debian's implementation, found with
// dlsym(RTLD_NEXT).
//
// Contract kept: the behaviour of every call is Abseil's own; only the
// sanitizer's model of it is added. Between an annotation's pre and post
// the sanitizer ignores memory accesses, so the conditions Abseil
// evaluates inside Lock/Unlock/Await (possibly on another thread) are not
// checked, as in an instrumented Abseil.

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#define AQUEDUCT_STR2(x) #x
#define AQUEDUCT_STR(x) AQUEDUCT_STR2(x)

namespace {

// Debian's implementation of a member of absl's inline namespace, by the
// rest of its mangled name (e.g. "5Mutex4LockEv"); aborts with the name
// when the library has no such symbol, so a changed Abseil fails loudly.
void* Real(const char* rest, bool is_const = false) {
  const std::string ns = AQUEDUCT_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string name = std::string(is_const ? "_ZNK4absl" : "_ZN4absl") +
                           std::to_string(ns.size()) + ns + rest;
  void* fn = dlsym(RTLD_NEXT, name.c_str());
  if (fn == nullptr) {
    std::fprintf(stderr, "tsan_absl_sync: no %s in the loaded Abseil\n",
                 name.c_str());
    std::abort();
  }
  return fn;
}

template <typename Fn>
Fn RealAs(const char* rest, bool is_const = false) {
  return reinterpret_cast<Fn>(Real(rest, is_const));
}

constexpr unsigned kRead = __tsan_mutex_read_lock;
constexpr unsigned kTry = __tsan_mutex_try_lock;
constexpr unsigned kTryFailed = __tsan_mutex_try_lock_failed;

// Abseil calls some of these entry points from others (AwaitWithTimeout
// calls AwaitWithDeadline through the PLT, so it reaches the definition
// here). Only the outermost call on a thread is annotated.
thread_local int depth = 0;

struct Outermost {
  Outermost() : outermost(depth++ == 0) {}
  ~Outermost() { --depth; }
  const bool outermost;
};

// A call that leaves `mu` held (in `flags` mode) whatever it returns.
template <typename Call>
auto Acquiring(void* mu, unsigned flags, Call call) {
  Outermost scope;
  if (!scope.outermost) return call();
  __tsan_mutex_pre_lock(mu, flags);
  auto result = call();
  __tsan_mutex_post_lock(mu, flags, 0);
  return result;
}

// A call that releases `mu` (held in `flags` mode).
template <typename Call>
void Releasing(void* mu, unsigned flags, Call call) {
  Outermost scope;
  if (!scope.outermost) return call();
  __tsan_mutex_pre_unlock(mu, flags);
  call();
  __tsan_mutex_post_unlock(mu, flags);
}

// A call made holding `mu` that releases it and takes it again before it
// returns (Await, CondVar::Wait): a release, then an acquire.
template <typename Call>
auto Reacquiring(void* mu, Call call) {
  Outermost scope;
  if (!scope.outermost) return call();
  __tsan_mutex_pre_unlock(mu, 0);
  __tsan_mutex_post_unlock(mu, 0);
  __tsan_mutex_pre_lock(mu, 0);
  auto result = call();
  __tsan_mutex_post_lock(mu, 0, 0);
  return result;
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static auto real = RealAs<void (*)(Mutex*)>("5Mutex4LockEv");
  Acquiring(this, 0, [&] { return (real(this), 0); });
}

void Mutex::ReaderLock() {
  static auto real = RealAs<void (*)(Mutex*)>("5Mutex10ReaderLockEv");
  Acquiring(this, kRead, [&] { return (real(this), 0); });
}

bool Mutex::TryLock() {
  static auto real = RealAs<bool (*)(Mutex*)>("5Mutex7TryLockEv");
  Outermost scope;
  if (!scope.outermost) return real(this);
  __tsan_mutex_pre_lock(this, kTry);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, locked ? kTry : kTry | kTryFailed, 0);
  return locked;
}

bool Mutex::ReaderTryLock() {
  static auto real = RealAs<bool (*)(Mutex*)>("5Mutex13ReaderTryLockEv");
  Outermost scope;
  if (!scope.outermost) return real(this);
  __tsan_mutex_pre_lock(this, kRead | kTry);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this,
                         locked ? kRead | kTry : kRead | kTry | kTryFailed, 0);
  return locked;
}

void Mutex::Unlock() {
  static auto real = RealAs<void (*)(Mutex*)>("5Mutex6UnlockEv");
  Releasing(this, 0, [&] { real(this); });
}

void Mutex::ReaderUnlock() {
  static auto real = RealAs<void (*)(Mutex*)>("5Mutex12ReaderUnlockEv");
  Releasing(this, kRead, [&] { real(this); });
}

void Mutex::LockWhen(const Condition& cond) {
  static auto real = RealAs<void (*)(Mutex*, const Condition&)>(
      "5Mutex8LockWhenERKNS0_9ConditionE");
  Acquiring(this, 0, [&] { return (real(this, cond), 0); });
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static auto real = RealAs<void (*)(Mutex*, const Condition&)>(
      "5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  Acquiring(this, kRead, [&] { return (real(this, cond), 0); });
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static auto real = RealAs<bool (*)(Mutex*, const Condition&, Duration)>(
      "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return Acquiring(this, 0, [&] { return real(this, cond, timeout); });
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  static auto real = RealAs<bool (*)(Mutex*, const Condition&, Time)>(
      "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return Acquiring(this, 0, [&] { return real(this, cond, deadline); });
}

void Mutex::Await(const Condition& cond) {
  static auto real = RealAs<void (*)(Mutex*, const Condition&)>(
      "5Mutex5AwaitERKNS0_9ConditionE");
  Reacquiring(this, [&] { return (real(this, cond), 0); });
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  static auto real = RealAs<bool (*)(Mutex*, const Condition&, Duration)>(
      "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return Reacquiring(this, [&] { return real(this, cond, timeout); });
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  static auto real = RealAs<bool (*)(Mutex*, const Condition&, Time)>(
      "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return Reacquiring(this, [&] { return real(this, cond, deadline); });
}

void CondVar::Wait(Mutex* mu) {
  static auto real =
      RealAs<void (*)(CondVar*, Mutex*)>("7CondVar4WaitEPNS0_5MutexE");
  Reacquiring(mu, [&] { return (real(this, mu), 0); });
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  static auto real = RealAs<bool (*)(CondVar*, Mutex*, Duration)>(
      "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  return Reacquiring(mu, [&] { return real(this, mu, timeout); });
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  static auto real = RealAs<bool (*)(CondVar*, Mutex*, Time)>(
      "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  return Reacquiring(mu, [&] { return real(this, mu, deadline); });
}

// Notification: Notify publishes with a release on the object, and on its
// flag: HasBeenNotified() is inline (an instrumented acquire load of the
// flag), the waits are not and acquire the object when they return true.
void Notification::Notify() {
  static auto real = RealAs<void (*)(Notification*)>("12Notification6NotifyEv");
  __tsan_release(this);
  __tsan_release(&notified_yet_);
  real(this);
}

void Notification::WaitForNotification() const {
  static auto real = RealAs<void (*)(const Notification*)>(
      "12Notification19WaitForNotificationEv", /*is_const=*/true);
  real(this);
  __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  static auto real = RealAs<bool (*)(const Notification*, Duration)>(
      "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE",
      /*is_const=*/true);
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  static auto real = RealAs<bool (*)(const Notification*, Time)>(
      "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE",
      /*is_const=*/true);
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

// BlockingCounter: a decrement that does not reach zero takes no lock, so
// each one releases on the object and Wait acquires it.
bool BlockingCounter::DecrementCount() {
  static auto real =
      RealAs<bool (*)(BlockingCounter*)>("15BlockingCounter14DecrementCountEv");
  __tsan_release(this);
  return real(this);
}

void BlockingCounter::Wait() {
  static auto real =
      RealAs<void (*)(BlockingCounter*)>("15BlockingCounter4WaitEv");
  real(this);
  __tsan_acquire(this);
}

ABSL_NAMESPACE_END
}  // namespace absl
