#include "services/intake/intake_metrics.h"

#include <algorithm>

#include "common/metrics/metrics.h"

namespace aqueduct::intake::metrics {

using aqueduct::metrics::CounterFamily;
using aqueduct::metrics::GaugeFamily;

void ScreeningStarted() {
  if (!aqueduct::metrics::Enabled()) return;
  static auto& started =
      CounterFamily("aqueduct_intake_screenings_started_total",
                    "Screenings started (a retried start counts once).")
          .Add({});
  started.Increment();
}

void ScreeningCompleted(common::v1::Route route, v1::HandoffState handoff) {
  if (!aqueduct::metrics::Enabled()) return;
  static auto& completed = CounterFamily(
      "aqueduct_intake_screenings_completed_total",
      "Screenings completed, by route and by whether the result reached "
      "referral at once (handoff DELIVERED) or waits in the outbox.");
  completed
      .Add({{"route", common::v1::Route_Name(route)},
            {"handoff", v1::HandoffState_Name(handoff)}})
      .Increment();
}

void ScreeningAbandoned(common::v1::Route early_risk_route) {
  if (!aqueduct::metrics::Enabled()) return;
  static auto& abandoned = CounterFamily(
      "aqueduct_intake_screenings_abandoned_total",
      "Screenings the person abandoned, by the route of their early risk case "
      "(ROUTE_UNSPECIFIED: none).");
  abandoned
      .Add({{"early_risk_route", common::v1::Route_Name(early_risk_route)}})
      .Increment();
}

void EarlyRiskCaseDelivered() {
  if (!aqueduct::metrics::Enabled()) return;
  static auto& delivered =
      CounterFamily(
          "aqueduct_intake_early_risk_cases_total",
          "Early risk cases (unfinished screenings with a safety flag) "
          "delivered to referral.")
          .Add({});
  delivered.Increment();
}

void OutboxEntries(int64_t handoffs, int64_t risk_cases,
                   int64_t oldest_handoff_ms, int64_t oldest_risk_ms,
                   int64_t now_ms) {
  if (!aqueduct::metrics::Enabled()) return;
  static auto& ages = GaugeFamily(
      "aqueduct_intake_outbox_oldest_age_seconds",
      "How long the oldest entry of each outbox has waited since it was "
      "first queued (0 when the outbox is empty).");
  static auto& handoff_age = ages.Add({{"outbox", "handoff"}});
  static auto& risk_age = ages.Add({{"outbox", "risk"}});
  auto age = [now_ms](int64_t since_ms) {
    return since_ms <= 0
               ? 0.0
               : static_cast<double>(std::max<int64_t>(0, now_ms - since_ms)) /
                     1000.0;
  };
  handoff_age.Set(handoffs > 0 ? age(oldest_handoff_ms) : 0.0);
  risk_age.Set(risk_cases > 0 ? age(oldest_risk_ms) : 0.0);
  static auto& family = GaugeFamily(
      "aqueduct_intake_outbox_entries",
      "What intake owes referral and has not delivered yet: completed "
      "results (outbox=\"handoff\") and early risk cases (outbox=\"risk\").");
  static auto& handoff = family.Add({{"outbox", "handoff"}});
  static auto& risk = family.Add({{"outbox", "risk"}});
  handoff.Set(static_cast<double>(handoffs));
  risk.Set(static_cast<double>(risk_cases));
}

void RescoredPage(const v1::RescoredPage& page) {
  if (!aqueduct::metrics::Enabled()) return;
  static auto& screenings = CounterFamily(
      "aqueduct_intake_rescore_screenings_total",
      "Stored screenings re-scoring jobs went through, by outcome: "
      "\"rescored\" (re-scored, or already under this ruleset version) or "
      "\"failed\" (scoring could not; the original stands).");
  static auto& rescored = screenings.Add({{"outcome", "rescored"}});
  static auto& failed = screenings.Add({{"outcome", "failed"}});
  static auto& changed =
      CounterFamily("aqueduct_intake_rescore_route_changes_total",
                    "Re-scored screenings whose route changed (each gets a "
                    "re-review case unless the job is a dry run).")
          .Add({});
  rescored.Increment(static_cast<double>(page.screened()));
  failed.Increment(static_cast<double>(page.failed()));
  changed.Increment(static_cast<double>(page.changed_route()));
}

void RescoreJobs(int running) {
  if (!aqueduct::metrics::Enabled()) return;
  static auto& jobs =
      GaugeFamily("aqueduct_intake_rescore_jobs",
                  "Re-scoring jobs (RescoreScreenings streams) running now.")
          .Add({});
  jobs.Set(running);
}

}  // namespace aqueduct::intake::metrics
