#include "services/intake/flow.h"

#include <google/protobuf/arena.h>

#include <algorithm>
#include <memory>

#include "absl/container/flat_hash_set.h"
#include "common/status/status_macros.h"
#include "protos/scoring/v1/result.pb.h"

namespace aqueduct::intake {

using scoring::expr::Truth;
using scoring::expr::Value;

absl::StatusOr<Flow> ComputeFlow(
    const scoring::CatalogIndex& catalog, const scoring::expr::SetTable& sets,
    const google::protobuf::Map<std::string, common::v1::Answer>& answers) {
  // Scratch for this call on an arena whose first block each thread reuses:
  // the copied answers and the instrument scores cost no malloc or free
  // (ComputeFlow runs on every call that shows a screening).
  constexpr size_t kScratch = 64 << 10;
  thread_local std::unique_ptr<char[]> block(new char[kScratch]);
  google::protobuf::ArenaOptions options;
  options.initial_block = block.get();
  options.initial_block_size = kScratch;
  google::protobuf::Arena arena(options);
  // Answers in catalog order, so results do not depend on map order.
  auto* ordered = google::protobuf::Arena::Create<
      google::protobuf::RepeatedPtrField<common::v1::Answer>>(&arena);
  for (const auto& info : catalog.instruments()) {
    for (const auto& item : info.items) {
      auto it = answers.find(item.def->id());
      if (it != answers.end()) *ordered->Add() = it->second;
    }
  }
  Flow flow;
  std::vector<Value> values(catalog.schema().size(), Value::Unknown());
  auto* scores =
      google::protobuf::Arena::CreateMessage<scoring::v1::ScoringResult>(
          &arena);
  google::protobuf::RepeatedPtrField<std::string> none;
  RETURN_IF_ERROR(catalog.ScoreInstruments(*ordered, none, sets, values.data(),
                                           scores, &flow.inapplicable));
  const absl::flat_hash_set<std::string> dropped(flow.inapplicable.begin(),
                                                 flow.inapplicable.end());
  auto answered = [&](const std::string& id) {
    return answers.contains(id) && !dropped.contains(id);
  };

  // Once an instrument's ends_flow_if holds (an ASQ acute positive), nothing
  // more is asked or required: the instruments already answered are kept as
  // they are and the screening can be completed at once.
  bool ended = false;
  for (const auto& info : catalog.instruments()) {
    // (An empty expression holds: only a written one can end the flow.)
    ended =
        ended || (!info.def->ends_flow_if().empty() &&
                  info.ends_flow_if.Eval(values.data(), sets) == Truth::kTrue);
  }
  auto any_answered = [&](const scoring::CatalogIndex::InstrumentInfo& info) {
    for (const auto& item : info.items) {
      if (answered(item.def->id())) return true;
    }
    return false;
  };

  // Instruments are asked in catalog order, a page each, except that an
  // `asked_first` instrument whose ask_if holds comes next, ahead of the
  // rest (the ASQ right after a risk answer). By the time an instrument's
  // turn comes, everything before it has been answered, so an ask_if that
  // is still unknown can only come from a declined answer: ask then (the
  // safe side).
  bool earlier_pending = false;
  std::vector<Flow::Ask> first_page;
  for (const auto& info : catalog.instruments()) {
    const Truth applies = info.applies_if.Eval(values.data(), sets);
    const Truth asked = info.ask_if.Eval(values.data(), sets);
    if (applies == Truth::kFalse || asked == Truth::kFalse) continue;
    if (ended) {
      if (!any_answered(info)) continue;
      flow.instruments.push_back(info.def->id());
      for (const auto& item : info.items) {
        if (item.applies_if.Eval(values.data(), sets) != Truth::kFalse &&
            answered(item.def->id())) {
          ++flow.answered;
        }
      }
      continue;
    }
    const bool decided = applies == Truth::kTrue && asked == Truth::kTrue;
    const bool first = decided && info.def->asked_first();
    if (!decided && earlier_pending) {
      // Not decidable yet: count its items as still to come.
      for (const auto& item : info.items) {
        if (item.applies_if.empty()) ++flow.remaining;
      }
      continue;
    }
    flow.instruments.push_back(info.def->id());
    std::vector<Flow::Ask> pending;
    bool waiting = false;  // items whose applies_if depends on this page
    for (const auto& item : info.items) {
      const Truth item_applies = item.applies_if.Eval(values.data(), sets);
      if (item_applies == Truth::kFalse) continue;
      if (answered(item.def->id())) {
        ++flow.answered;
        continue;
      }
      ++flow.remaining;
      if (item.def->required()) flow.missing_required.push_back(item.def->id());
      if (item_applies == Truth::kUnknown) {
        waiting = true;
        continue;
      }
      pending.push_back(Flow::Ask{&info, item.def});
    }
    if (pending.empty() && waiting) {
      // Only condition-dependent items are left and their condition cannot
      // be decided (a declined answer): ask them.
      for (const auto& item : info.items) {
        if (!answered(item.def->id()) &&
            item.applies_if.Eval(values.data(), sets) == Truth::kUnknown) {
          pending.push_back(Flow::Ask{&info, item.def});
        }
      }
    }
    if (first && first_page.empty() && !pending.empty()) {
      first_page = pending;
    } else if (!earlier_pending && !pending.empty()) {
      flow.page = std::move(pending);
    }
    if (flow.remaining > 0) earlier_pending = true;
  }
  if (!first_page.empty()) flow.page = std::move(first_page);
  return flow;
}

}  // namespace aqueduct::intake
