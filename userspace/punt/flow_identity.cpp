#include "punt/flow_identity.h"

#include <string_view>

#include "parsers/dns_message.h"
#include "parsers/http_request.h"
#include "parsers/ssh_banner.h"
#include "parsers/tls_client_hello.h"

namespace portcullis::punt {
namespace {

using parsers::ParseStatus;
using State = FlowIdentity::State;

constexpr uint8_t kTlsHandshakeRecord = 0x16;

FlowIdentity from_tls(std::span<const uint8_t> stream) {
  FlowIdentity identity;
  identity.l7 = policy::L7Proto::tls;
  const parsers::ClientHelloResult hello = parsers::parse_client_hello(stream);
  identity.detail = std::string(parsers::to_string(hello.reason));
  if (hello.status == ParseStatus::need_more) return identity;
  if (hello.status == ParseStatus::malformed) {
    identity.state = State::malformed;
    return identity;
  }
  identity.state = State::identified;
  identity.ech = hello.has_ech;
  // An address in SNI names no host: the flow is matched by its destination address only.
  if (hello.sni && !hello.sni_is_ip_literal) identity.name = hello.sni;
  return identity;
}

FlowIdentity from_ssh(const parsers::SshBannerResult& banner) {
  FlowIdentity identity;
  identity.l7 = policy::L7Proto::ssh;
  identity.detail = std::string(parsers::to_string(banner.reason));
  if (banner.status == ParseStatus::found) identity.state = State::identified;
  if (banner.status == ParseStatus::malformed) identity.state = State::malformed;
  return identity;
}

FlowIdentity from_http(std::span<const uint8_t> stream) {
  FlowIdentity identity;
  const parsers::HttpRequestResult request = parsers::parse_http_request(stream);
  identity.detail = std::string(parsers::to_string(request.reason));
  if (request.status == ParseStatus::need_more) return identity;
  if (request.status == ParseStatus::found) {
    identity.state = State::identified;
    identity.l7 = policy::L7Proto::http;
    if (request.host && !request.host_is_ip_literal) identity.name = request.host;
    return identity;
  }
  // A request line that reads as HTTP but whose head is unsafe (two Hosts, smuggling shapes) is malformed
  // HTTP; bytes that never looked like a request are some other protocol.
  switch (request.reason) {
    case parsers::HttpRequestReason::method_invalid:
    case parsers::HttpRequestReason::method_too_long:
    case parsers::HttpRequestReason::request_line_invalid:
    case parsers::HttpRequestReason::version_invalid:
    case parsers::HttpRequestReason::not_http1:
      identity.state = State::unknown;
      break;
    default:
      identity.state = State::malformed;
      identity.l7 = policy::L7Proto::http;
      break;
  }
  return identity;
}

}  // namespace

FlowIdentity identify_tcp_stream(std::span<const uint8_t> stream) {
  if (stream.empty()) return {};
  if (stream[0] == kTlsHandshakeRecord) return from_tls(stream);
  if (stream[0] == 'S') {
    // "SSH-" or an HTTP method that starts with S (SEARCH, SUBSCRIBE): the banner parser tells them apart
    // within four bytes.
    const parsers::SshBannerResult banner = parsers::parse_ssh_banner(stream);
    if (banner.status != ParseStatus::malformed || banner.reason != parsers::SshBannerReason::not_ssh) {
      return from_ssh(banner);
    }
  }
  return from_http(stream);
}

bool starts_quic_long_header(std::span<const uint8_t> datagram) {
  // Long header form and the fixed bit, then a version and a connection ID length at least.
  return datagram.size() >= 7 && (datagram[0] & 0xc0) == 0xc0;
}

FlowIdentity identify_quic(const parsers::QuicClientHelloResult& result) {
  FlowIdentity identity;
  identity.l7 = policy::L7Proto::quic;
  identity.detail = std::string(parsers::to_string(result.reason));
  switch (result.version_kind) {
    case parsers::QuicVersionKind::reserved:
    case parsers::QuicVersionKind::unknown:
      identity.state = State::identified;
      identity.quic_unknown_version = true;
      identity.detail = "version " + std::to_string(result.version);
      return identity;
    case parsers::QuicVersionKind::negotiation:
      identity.state = State::malformed;  // a client never sends Version Negotiation
      return identity;
    default:
      break;
  }
  if (result.status == ParseStatus::need_more) return identity;
  if (result.status == ParseStatus::malformed) {
    identity.state = State::malformed;
    if (result.reason == parsers::QuicReason::client_hello_invalid) {
      identity.detail = std::string(parsers::to_string(result.client_hello.reason));
    }
    return identity;
  }
  identity.state = State::identified;
  identity.ech = result.client_hello.has_ech;
  if (result.client_hello.sni && !result.client_hello.sni_is_ip_literal) identity.name = result.client_hello.sni;
  return identity;
}

namespace {

// `flow` as the policy is asked about it, showing `l7` and named `name` (bound to its address unless said otherwise).
policy::FlowQuery query_of(const PendingFlowFacts& flow, policy::L7Proto l7, std::optional<std::string> name) {
  policy::FlowQuery query;
  query.src = flow.src;
  query.dst = flow.dst;
  query.proto = flow.proto;
  query.dport = flow.dport;
  query.icmp_type = flow.icmp_type;
  query.l7 = l7;
  query.name = std::move(name);
  return query;
}

}  // namespace

FlowIdentity identify_dns_query(std::span<const uint8_t> message) {
  const parsers::DnsMessage query = parsers::parse_dns_message(message, parsers::DnsDirection::query);
  FlowIdentity identity;
  identity.state = FlowIdentity::State::identified;
  identity.l7 = policy::L7Proto::dns;
  if (query.status == parsers::ParseStatus::found) {
    identity.name = query.question.name;
  } else {
    identity.state = FlowIdentity::State::malformed;
    identity.detail = std::string(parsers::to_string(query.reason));
  }
  return identity;
}

PendingVerdict decide_pending_flow(const policy::CompiledPolicy& policy, policy::Mode mode,
                                   const PendingFlowFacts& flow, const FlowIdentity& identity, bool name_bound) {
  PendingVerdict verdict;
  if (identity.state == FlowIdentity::State::malformed) {
    verdict.reason = PC_DROP_L7_MALFORMED;
    verdict.group = policy.group_of(flow.src);
    return verdict;
  }
  if (identity.ech && policy.policy().defaults.ech == policy::EchMode::deny) {
    verdict.reason = PC_DROP_ECH_REFUSED;
    verdict.group = policy.group_of(flow.src);
    return verdict;
  }
  if (identity.quic_unknown_version) {
    verdict.group = policy.group_of(flow.src);
    verdict.allow = policy.policy().defaults.quic_unknown_version == policy::Action::allow;
    if (!verdict.allow) verdict.reason = PC_DROP_QUIC_UNKNOWN_VERSION;
    return verdict;
  }
  policy::FlowQuery query = query_of(flow, identity.l7, identity.name);
  // What the flow claims, taken at its word: a deny of the name it shows holds without any binding.
  query.name_bound = true;
  const policy::Decision claimed = policy.evaluate(query, mode);
  // What it is allowed: a name match that needs a DNS binding holds only with one.
  query.name_bound = name_bound;
  const policy::Decision decision = policy.evaluate(query, mode);
  const bool denied_by_rule = claimed.verdict == policy::Action::deny && claimed.reason == policy::DecisionReason::rule;
  const policy::Decision& deciding = denied_by_rule ? claimed : decision;
  verdict.group = deciding.group;
  verdict.rule = deciding.rule;
  if (!denied_by_rule && decision.verdict == policy::Action::allow) {
    verdict.allow = true;
    return verdict;
  }
  switch (deciding.reason) {
    case policy::DecisionReason::rule:
      verdict.reason = PC_DROP_DENIED_BY_RULE;
      return verdict;
    case policy::DecisionReason::source_not_in_group:
      verdict.reason = PC_DROP_SOURCE_NOT_IN_GROUP;
      return verdict;
    case policy::DecisionReason::dns_not_resolver:
      verdict.reason = PC_DROP_DNS_NOT_RESOLVER;
      return verdict;
    default:
      break;
  }
  // Denied by default. Say why when the name would have been allowed with a binding, or when the flow
  // showed no protocol a rule could match.
  if (claimed.verdict == policy::Action::allow) {
    verdict.reason = PC_DROP_NO_DNS_BINDING;
  } else if (identity.state == FlowIdentity::State::unknown) {
    verdict.reason = PC_DROP_L7_MISMATCH;
  } else {
    verdict.reason = PC_DROP_DENIED_BY_DEFAULT;
  }
  return verdict;
}

PendingVerdict decide_by_bound_names(const policy::CompiledPolicy& policy, policy::Mode mode,
                                     const PendingFlowFacts& flow, const FlowIdentity& identity,
                                     const std::vector<std::string>& bound_names) {
  const PendingVerdict plain = decide_pending_flow(policy, mode, flow, identity, false);
  const bool shows_names = identity.l7 == policy::L7Proto::tls || identity.l7 == policy::L7Proto::quic ||
                           identity.l7 == policy::L7Proto::http;
  if (identity.state == FlowIdentity::State::malformed) return plain;
  if (identity.name || shows_names) {
    if (!plain.allow) return plain;
    return denied_by_bound_names(policy, mode, flow, identity, bound_names).value_or(plain);
  }
  std::optional<PendingVerdict> allowed;
  for (const std::string& name : bound_names) {
    FlowIdentity named = identity;
    named.name = name;
    const PendingVerdict verdict = decide_pending_flow(policy, mode, flow, named, true);
    if (!verdict.allow && verdict.reason == PC_DROP_DENIED_BY_RULE) return verdict;
    if (verdict.allow && !allowed) allowed = verdict;
  }
  return allowed ? *allowed : plain;
}

std::optional<PendingVerdict> denied_by_bound_names(const policy::CompiledPolicy& policy, policy::Mode mode,
                                                    const PendingFlowFacts& flow, const FlowIdentity& identity,
                                                    const std::vector<std::string>& bound_names) {
  for (const std::string& name : bound_names) {
    const policy::Decision decision = policy.evaluate(query_of(flow, identity.l7, name), mode);
    // Policy order: the first deny of that kind is the one a log names.
    for (const policy::Rule* rule : decision.matched) {
      if (rule->action != policy::Action::deny || policy::proto_matches_shown_name(rule->proto)) continue;
      PendingVerdict verdict;
      verdict.group = decision.group;
      verdict.rule = rule;
      verdict.reason = PC_DROP_DENIED_BY_RULE;
      return verdict;
    }
  }
  return std::nullopt;
}

}  // namespace portcullis::punt
