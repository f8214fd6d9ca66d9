#include "services/referral/referral_core.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/util/names.h"

namespace aqueduct::referral {
namespace {

using common::v1::Route;

v1::Priority PriorityOf(Route route) {
  switch (route) {
    case common::v1::CRISIS_ACUTE:
    case common::v1::CRISIS_URGENT:
      return v1::URGENT;
    case common::v1::SELF_HELP:
      return v1::LOW;
    default:
      return v1::ROUTINE;
  }
}

// Queue order: priority first, then age (oldest first). Within URGENT,
// crisis-acute (imminent risk) always sorts above crisis-urgent, however old.
// rank * 1e13 stays above any millisecond timestamp and every score is an
// integer below 2^53, so doubles hold it exactly.
double QueueScore(v1::Priority priority, Route route, int64_t created_ms) {
  const int rank = 2 * static_cast<int>(priority) + (route == common::v1::CRISIS_ACUTE ? 0 : 1);
  return static_cast<double>(rank) * 1e13 + static_cast<double>(created_ms);
}

std::string EncodeToken(const QueueCursor& c) {
  return absl::WebSafeBase64Escape(absl::StrCat(absl::StrFormat("%.17g", c.score), "/", c.id));
}

absl::StatusOr<QueueCursor> DecodeToken(const std::string& token) {
  std::string raw;
  QueueCursor c;
  if (!absl::WebSafeBase64Unescape(token, &raw)) {
    return absl::InvalidArgumentError("page_token: malformed");
  }
  std::vector<std::string> parts = absl::StrSplit(raw, absl::MaxSplits('/', 1));
  if (parts.size() != 2 || !absl::SimpleAtod(parts[0], &c.score) || parts[1].empty()) {
    return absl::InvalidArgumentError("page_token: malformed");
  }
  c.id = parts[1];
  return c;
}

bool Matches(const v1::Referral& r, const v1::ListQueueRequest& req) {
  if (r.state() == v1::DECIDED || r.state() == v1::WITHDRAWN) return false;
  if (r.state() == v1::CLAIMED && !req.include_claimed()) return false;
  if (req.priority() != v1::PRIORITY_UNSPECIFIED && r.priority() != req.priority()) {
    return false;
  }
  if (!req.routes().empty() &&
      std::find(req.routes().begin(), req.routes().end(), r.current_route()) ==
          req.routes().end()) {
    return false;
  }
  if (!req.location_states().empty() &&
      std::find(req.location_states().begin(), req.location_states().end(),
                r.location_state()) == req.location_states().end()) {
    return false;
  }
  return true;
}

}  // namespace

std::string ReferralCore::ReferralId(const std::string& screening_id,
                                     const std::string& ruleset_version) {
  std::string version = absl::AsciiStrToLower(ruleset_version);
  for (char& c : version) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c))) c = '-';
  }
  return absl::StrCat(screening_id, "-", version);
}

absl::StatusOr<v1::Referral> ReferralCore::CreateReferral(
    const v1::CreateReferralRequest& request, const Actor& actor,
    absl::Time deadline) {
  auto screening = ParseScreeningName(request.screening(), "screening");
  if (!screening.ok()) return screening.status();
  if (!request.has_result()) {
    return absl::InvalidArgumentError("result: is required");
  }
  const auto& result = request.result();
  if (result.ruleset_version().empty()) {
    return absl::InvalidArgumentError("result.ruleset_version: is required");
  }
  const Route route = result.routing().primary_route();
  if (route == common::v1::ROUTE_UNSPECIFIED || !common::v1::Route_IsValid(route)) {
    return absl::InvalidArgumentError("result.routing.primary_route: is required");
  }
  if (!request.location_state().empty()) {
    if (absl::Status s = ValidateStateCode(request.location_state(), "location_state");
        !s.ok()) {
      return s;
    }
  }

  const std::string id = ReferralId(screening->screening_id, result.ruleset_version());
  const int64_t now_ms = clock_->NowMillis();
  v1::Referral referral;
  referral.set_name(absl::StrCat("referrals/", id));
  referral.set_screening(screening->ToString());
  referral.set_proposed_route(route);
  referral.set_current_route(route);
  referral.set_required_reviewer(result.routing().required_reviewer());
  referral.set_priority(PriorityOf(route));
  referral.set_state(route == common::v1::SELF_HELP ? v1::DELIVERED_SELF_HELP
                                                    : v1::OPEN);
  referral.set_location_state(request.location_state());
  referral.set_ruleset_version(result.ruleset_version());
  referral.set_create_time_ms(now_ms);
  *referral.mutable_result() = result;

  v1::AuditEvent created;
  created.set_name(absl::StrCat(referral.name(), "/auditEvents/1"));
  created.set_kind("created");
  created.set_actor(actor.id);
  created.set_actor_role(actor.role);
  created.set_time_ms(now_ms);
  created.set_ruleset_version(result.ruleset_version());
  created.set_route_after(route);

  auto outcome = store_->CreateIfAbsent(
      id, referral, created, QueueScore(referral.priority(), route, now_ms),
      deadline);
  if (!outcome.ok()) return outcome.status();
  return std::move(outcome->referral);
}

absl::StatusOr<v1::ListQueueResponse> ReferralCore::ListQueue(
    const v1::ListQueueRequest& request, absl::Time deadline) {
  if (request.page_size() < 0) {
    return absl::InvalidArgumentError("page_size: must not be negative");
  }
  for (int i = 0; i < request.location_states_size(); ++i) {
    if (absl::Status s = ValidateStateCode(request.location_states(i),
                                           absl::StrCat("location_states[", i, "]"));
        !s.ok()) {
      return s;
    }
  }
  const int page_size =
      request.page_size() == 0 ? kDefaultPageSize
                               : std::min(request.page_size(), kMaxPageSize);
  std::optional<QueueCursor> cursor;
  if (!request.page_token().empty()) {
    auto decoded = DecodeToken(request.page_token());
    if (!decoded.ok()) return decoded.status();
    cursor = *decoded;
  }

  v1::ListQueueResponse response;
  // Read in batches until the page is full or the queue ends; filtered-out
  // cases only advance the cursor.
  bool more = true;
  while (response.cases_size() < page_size && more) {
    const int batch = std::max(page_size, 50);
    auto entries = store_->ScanQueue(cursor, batch, deadline);
    if (!entries.ok()) return entries.status();
    more = static_cast<int>(entries->size()) == batch;
    for (size_t i = 0; i < entries->size(); ++i) {
      const QueueEntry& e = (*entries)[i];
      cursor = e.position;
      if (Matches(e.referral, request)) {
        *response.add_cases() = e.referral;
        if (response.cases_size() == page_size) {
          more = more || i + 1 < entries->size();
          break;
        }
      }
    }
  }
  if (more && cursor.has_value()) {
    response.set_next_page_token(EncodeToken(*cursor));
  }
  return response;
}

}  // namespace aqueduct::referral
