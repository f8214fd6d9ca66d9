#ifndef AQUEDUCT_COMMON_STATUS_STATUS_MACROS_H_
#define AQUEDUCT_COMMON_STATUS_STATUS_MACROS_H_

// Debian's Abseil (20220623) has no status macros; these keep the upstream
// spelling minus the ABSL_ prefix so a later switch is mechanical.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define AQ_STATUS_CONCAT_INNER_(a, b) a##b
#define AQ_STATUS_CONCAT_(a, b) AQ_STATUS_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                                 \
  do {                                                        \
    if (absl::Status aq_status_ = (expr); !aq_status_.ok()) { \
      return aq_status_;                                      \
    }                                                         \
  } while (false)

#define ASSIGN_OR_RETURN(lhs, rexpr)                                        \
  AQ_ASSIGN_OR_RETURN_IMPL_(AQ_STATUS_CONCAT_(aq_statusor_, __LINE__), lhs, \
                            rexpr)

#define AQ_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr)    \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(*statusor)

#endif  // AQUEDUCT_COMMON_STATUS_STATUS_MACROS_H_
