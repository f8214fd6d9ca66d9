#include "services/scoring/scoring_service.h"

#include <google/protobuf/arena.h>

#include "absl/strings/str_cat.h"
#include "common/auth/grpc_auth.h"
#include "common/server/callback.h"
#include "common/status/status_util.h"
#include "services/scoring/digest.h"

namespace aqueduct::scoring {
namespace {

using Bytes = grpc::ByteBuffer;

// Parses message number `n` of a stream (counted from 0) from its bytes;
// INVALID_ARGUMENT naming it when they are not such a message.
template <class Message>
absl::Status ParseStreamed(grpc::ByteBuffer* bytes, int64_t n,
                           Message* message) {
  if (grpc::SerializationTraits<Message>::Deserialize(bytes, message).ok())
    return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "message ", n, " of the stream: not a ", Message::descriptor()->name(),
      " (bytes that do not parse, or a string that is not "
      "UTF-8); the messages before it were answered"));
}

template <class Message>
grpc::Status SerializeTo(const Message& message, grpc::ByteBuffer* bytes) {
  bool own_buffer = false;
  return grpc::SerializationTraits<Message>::Serialize(message, bytes,
                                                       &own_buffer);
}

// Reads one request, scores it, writes one response, and repeats: at most
// one read or write is outstanding, so a slow reader applies back-pressure.
// One screening a message is what ScoreAnswers scores (microseconds of pure
// CPU work), so it runs inline on the reactor thread, as ScoreAnswers does.
class BatchReactor final : public grpc::ServerBidiReactor<Bytes, Bytes> {
 public:
  explicit BatchReactor(const ScoringEngine* engine) : engine_(engine) {
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // client finished writing (or the call is cancelled)
      Finish(grpc::Status::OK);
      return;
    }
    request_.Clear();
    if (absl::Status parsed = ParseStreamed(&in_, read_++, &request_);
        !parsed.ok()) {
      Finish(ToGrpcStatus(parsed));
      return;
    }
    response_.Clear();
    response_.set_correlation_id(request_.correlation_id());
    absl::Status s;
    if (request_.correlation_id().empty()) {
      s = absl::InvalidArgumentError("correlation_id: is required");
    } else {
      s = engine_->ScoreInto(request_.request(), response_.mutable_result());
    }
    if (!s.ok()) {
      response_.clear_result();
      response_.mutable_error()->set_code(static_cast<int>(s.code()));
      response_.mutable_error()->set_message(std::string(s.message()));
    }
    out_.Clear();
    if (grpc::Status written = SerializeTo(response_, &out_); !written.ok()) {
      Finish(written);
      return;
    }
    StartWrite(&out_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                          "stream closed while writing"));
      return;
    }
    StartRead(&in_);
  }

  void OnDone() override { delete this; }

 private:
  const ScoringEngine* engine_;
  Bytes in_, out_;
  int64_t read_ = 0;  // messages read so far
  v1::ScoreBatchRequest request_;
  v1::ScoreBatchResponse response_;
};

constexpr int kMaxRescoreItems = 5000;

// Re-scoring for batch jobs: one request message carries up to 5000 stored
// screenings and gets one response message. Like BatchReactor, one read or
// write at a time (back-pressure); the CPU work, a whole message at a time,
// runs on the batch pool, never on a gRPC thread (a full pool ends the
// stream with UNAVAILABLE; the job resumes from its checkpoint). While a
// message is scored no read or write is outstanding, so gRPC cannot finish
// the stream under it. Messages live on
// arenas that are reset, not freed: the request's between reads, the
// response's between batches, and each item's parsed answers and result on a
// scratch arena reset per item, so a long job costs almost no malloc/free.
class RescoreReactor final : public grpc::ServerBidiReactor<Bytes, Bytes> {
 public:
  RescoreReactor(const ScoringEngine* engine, server::WorkerPool* pool)
      : engine_(engine),
        pool_(pool),
        request_block_(4 << 20),
        response_block_(2 << 20),
        scratch_block_(256 << 10),
        request_arena_(ArenaOptions(request_block_)),
        response_arena_(ArenaOptions(response_block_)),
        scratch_arena_(ArenaOptions(scratch_block_)) {
    NextRead();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    if (absl::Status parsed = ParseStreamed(&in_, read_++, request_);
        !parsed.ok()) {
      Finish(ToGrpcStatus(parsed));
      return;
    }
    if (request_->ruleset_version().empty()) {
      Finish(ToGrpcStatus(
          absl::InvalidArgumentError("ruleset_version: is required")));
      return;
    }
    if (engine_->Find(request_->ruleset_version()) == nullptr) {
      Finish(ToGrpcStatus(absl::NotFoundError(
          absl::StrCat("ruleset_version: \"", request_->ruleset_version(),
                       "\" is not loaded"))));
      return;
    }
    if (request_->items_size() > kMaxRescoreItems) {
      Finish(ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat("items: ", request_->items_size(),
                       " in one message; at most ", kMaxRescoreItems))));
      return;
    }
    if (!pool_->Schedule([this] {
          ScoreMessage();
          out_.Clear();
          grpc::Status s = SerializeTo(*response_, &out_);
          server::HappensBefore(this);  // what the pool did, for the TSan build
          if (!s.ok()) {
            Finish(s);
            return;
          }
          StartWrite(&out_);  // last: OnWriteDone may run at once
        })) {
      Finish(server::BusyStatus());
    }
  }

  void OnWriteDone(bool ok) override {
    server::HappensAfter(this);
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                          "stream closed while writing"));
      return;
    }
    NextRead();
  }

  void OnDone() override {
    server::HappensAfter(this);
    delete this;
  }

 private:
  // Scores the request's items into a new response_.
  void ScoreMessage() {
    response_arena_.Reset();
    response_ = google::protobuf::Arena::CreateMessage<v1::RescoreResponse>(
        &response_arena_);
    response_->mutable_items()->Reserve(request_->items_size());
    for (const auto& item : request_->items()) {
      v1::RescoredItem* out = response_->add_items();
      out->set_correlation_id(item.correlation_id());
      scratch_arena_.Reset();
      auto* scratch =
          google::protobuf::Arena::CreateMessage<v1::ScoreAnswersRequest>(
              &scratch_arena_);
      absl::Status s;
      if (item.correlation_id().empty()) {
        s = absl::InvalidArgumentError("correlation_id: is required");
      } else if (!scratch->ParseFromString(item.packed_request())) {
        s = absl::InvalidArgumentError(
            "packed_request: is not a serialized ScoreAnswersRequest");
      } else {
        scratch->set_ruleset_version(request_->ruleset_version());
        // The digest first (no explanations); the full result only for the
        // few that changed.
        s = engine_->DigestInto(*scratch, out->mutable_after());
        if (s.ok() && DigestsDiffer(item.before(), out->after())) {
          out->set_changed(true);
          s = engine_->ScoreInto(*scratch, out->mutable_result());
        }
      }
      if (!s.ok()) {
        out->clear_after();
        out->clear_changed();
        out->clear_result();
        out->mutable_error()->set_code(static_cast<int>(s.code()));
        out->mutable_error()->set_message(std::string(s.message()));
        continue;
      }
    }
  }

  // An arena whose first block is ours: Reset() keeps it, so a batch that
  // fits allocates nothing from the heap.
  static google::protobuf::ArenaOptions ArenaOptions(std::vector<char>& block) {
    google::protobuf::ArenaOptions o;
    o.initial_block = block.data();
    o.initial_block_size = block.size();
    o.max_block_size = 1 << 20;
    return o;
  }
  void NextRead() {
    request_arena_.Reset();
    request_ = google::protobuf::Arena::CreateMessage<v1::RescoreRequest>(
        &request_arena_);
    StartRead(&in_);
  }

  const ScoringEngine* engine_;
  server::WorkerPool* pool_;
  std::vector<char> request_block_, response_block_, scratch_block_;
  google::protobuf::Arena request_arena_, response_arena_, scratch_arena_;
  Bytes in_, out_;
  int64_t read_ = 0;  // messages read so far
  v1::RescoreRequest* request_ = nullptr;
  v1::RescoreResponse* response_ = nullptr;
};

// A stream refused before it starts (no token, or not the caller's RPC).
template <class Request, class Response>
class RefusedStream final : public grpc::ServerBidiReactor<Request, Response> {
 public:
  explicit RefusedStream(const absl::Status& status) {
    this->Finish(ToGrpcStatus(status));
  }
  void OnDone() override { delete this; }
};

constexpr char kService[] = "/aqueduct.scoring.v1.ScoringService/";

}  // namespace

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>*
ScoringServiceImpl::Rescore(grpc::CallbackServerContext* context) {
  if (auto who = auth::CheckCall(*authorizer_, *context,
                                 absl::StrCat(kService, "Rescore"));
      !who.ok()) {
    return new RefusedStream<Bytes, Bytes>(who.status());
  }
  return new RescoreReactor(engine_.get(), batch_pool_);
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>*
ScoringServiceImpl::ScoreBatch(grpc::CallbackServerContext* context) {
  if (auto who = auth::CheckCall(*authorizer_, *context,
                                 absl::StrCat(kService, "ScoreBatch"));
      !who.ok()) {
    return new RefusedStream<Bytes, Bytes>(who.status());
  }
  return new BatchReactor(engine_.get());
}

grpc::ServerUnaryReactor* ScoringServiceImpl::ScoreAnswers(
    grpc::CallbackServerContext* context,
    const v1::ScoreAnswersRequest* request, v1::ScoringResult* response) {
  auto* reactor = context->DefaultReactor();
  if (auto who = auth::CheckCall(*authorizer_, *context,
                                 absl::StrCat(kService, "ScoreAnswers"));
      !who.ok()) {
    reactor->Finish(ToGrpcStatus(who.status()));
    return reactor;
  }
  absl::StatusOr<v1::ScoringResult> result = engine_->Score(*request);
  if (result.ok()) *response = std::move(*result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

grpc::ServerUnaryReactor* ScoringServiceImpl::DescribeCatalog(
    grpc::CallbackServerContext* context,
    const v1::DescribeCatalogRequest* request, v1::Catalog* response) {
  auto* reactor = context->DefaultReactor();
  if (auto who = auth::CheckCall(*authorizer_, *context,
                                 absl::StrCat(kService, "DescribeCatalog"));
      !who.ok()) {
    reactor->Finish(ToGrpcStatus(who.status()));
    return reactor;
  }
  const v1::Catalog& catalog = engine_->catalog().catalog();
  if (!request->version().empty() && request->version() != catalog.version()) {
    reactor->Finish(ToGrpcStatus(absl::NotFoundError(
        absl::StrCat("version: catalog \"", request->version(),
                     "\" is not loaded (loaded: ", catalog.version(), ")"))));
    return reactor;
  }
  *response = catalog;
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ScoringServiceImpl::ListRulesets(
    grpc::CallbackServerContext* context, const v1::ListRulesetsRequest*,
    v1::ListRulesetsResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (auto who = auth::CheckCall(*authorizer_, *context,
                                 absl::StrCat(kService, "ListRulesets"));
      !who.ok()) {
    reactor->Finish(ToGrpcStatus(who.status()));
    return reactor;
  }
  *response = engine_->Rulesets();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace aqueduct::scoring
