// The Binary Star state machine and its state message: see binary_star.hpp.
#include "src/wire/binary_star.hpp"

#include <cassert>

namespace zyolo {
namespace {

constexpr std::string_view kHaHeader = "ZHA01";

}  // namespace

std::string_view ha_state_name(HaState s) {
  switch (s) {
    case HaState::Primary:
      return "PRIMARY";
    case HaState::Backup:
      return "BACKUP";
    case HaState::Active:
      return "ACTIVE";
    case HaState::Passive:
      return "PASSIVE";
  }
  return "?";
}

std::string_view ha_role_name(HaRole r) {
  return r == HaRole::Primary ? "primary" : "backup";
}

std::string_view ha_anomaly_name(HaAnomaly a) {
  switch (a) {
    case HaAnomaly::None:
      return "none";
    case HaAnomaly::DualActive:
      return "dual_active";
    case HaAnomaly::DualPassive:
      return "dual_passive";
    case HaAnomaly::SameRole:
      return "same_role";
  }
  return "?";
}

BinaryStar::BinaryStar(HaRole role, std::chrono::milliseconds heartbeat, int missed,
                       Clock::time_point now)
    : role_(role),
      state_(role == HaRole::Primary ? HaState::Primary : HaState::Backup),
      expiry_(heartbeat * missed),
      last_heard_(now),
      peer_expiry_(now + expiry_) {
  assert(missed >= 1 && heartbeat.count() > 0);
}

double BinaryStar::peer_silent_s(Clock::time_point now) const {
  return std::chrono::duration<double>(now - last_heard_).count();
}

HaOutcome BinaryStar::become(HaState to, std::string_view reason, HaAnomaly anomaly) {
  HaOutcome o{state_, to, reason, anomaly};
  state_ = to;
  return o;
}

HaOutcome BinaryStar::on_peer(HaState peer, std::optional<HaRole> peer_role,
                              Clock::time_point now) {
  // PRIMARY and BACKUP say the role too.
  if (!peer_role && peer == HaState::Primary) peer_role = HaRole::Primary;
  if (!peer_role && peer == HaState::Backup) peer_role = HaRole::Backup;
  heard_ = true;
  lost_reported_ = false;
  last_heard_ = now;
  peer_expiry_ = now + expiry_;
  if (peer_role == role_)  // both primary, or both backup: nothing moves until one is gone
    return become(state_,
                  role_ == HaRole::Primary ? "the peer was started as primary too"
                                           : "the peer was started as backup too",
                  HaAnomaly::SameRole);
  switch (state_) {
    case HaState::Primary:
      if (peer == HaState::Backup)
        return become(HaState::Active, "the backup is up and not active");
      if (peer == HaState::Active) return become(HaState::Passive, "the backup is active");
      break;  // PASSIVE: it is about to notice that we restarted and become ACTIVE; wait for it
    case HaState::Backup:
      if (peer == HaState::Active) return become(HaState::Passive, "the primary is active");
      break;  // PRIMARY: it will become ACTIVE; PASSIVE: it will, seeing we restarted
    case HaState::Active:
      if (peer == HaState::Active) {
        if (role_ == HaRole::Backup)
          return become(HaState::Passive, "both active: the backup yields", HaAnomaly::DualActive);
        return become(state_, "both active: the backup is to yield", HaAnomaly::DualActive);
      }
      break;  // PRIMARY or BACKUP: it restarted and will go PASSIVE; PASSIVE: as it should be
    case HaState::Passive:
      if (peer == HaState::Primary) return become(HaState::Active, "the primary restarted");
      if (peer == HaState::Backup) return become(HaState::Active, "the backup restarted");
      if (peer == HaState::Passive) {
        if (role_ == HaRole::Primary)
          return become(HaState::Active, "both passive: the primary takes over",
                        HaAnomaly::DualPassive);
        return become(state_, "both passive: the primary is to take over", HaAnomaly::DualPassive);
      }
      break;  // ACTIVE: as it should be
  }
  return become(state_, "");
}

HaOutcome BinaryStar::on_client_request(Clock::time_point now) {
  HaOutcome o;
  switch (state_) {
    case HaState::Active:
      o = become(state_, "");
      break;
    case HaState::Backup:  // never serves before it has seen the primary active
      o = become(state_, "");
      break;
    case HaState::Primary:
    case HaState::Passive:
      if (!peer_expired(now)) {
        o = become(state_, "");
        break;
      }
      o = become(HaState::Active, heard_ ? "a client request came"
                                         : "the peer never answered, a client request came");
      break;
  }
  o.serve = state_ == HaState::Active;
  return o;
}

HaOutcome BinaryStar::on_event(HaEvent e, Clock::time_point now, std::optional<HaRole> peer_role) {
  switch (e) {
    case HaEvent::PeerPrimary:
      return on_peer(HaState::Primary, peer_role, now);
    case HaEvent::PeerBackup:
      return on_peer(HaState::Backup, peer_role, now);
    case HaEvent::PeerActive:
      return on_peer(HaState::Active, peer_role, now);
    case HaEvent::PeerPassive:
      return on_peer(HaState::Passive, peer_role, now);
    case HaEvent::ClientRequest:
      return on_client_request(now);
  }
  return become(state_, "");
}

HaOutcome BinaryStar::tick(Clock::time_point now) {
  HaOutcome o = become(state_, "");
  if (heard_ && !lost_reported_ && peer_expired(now)) {
    lost_reported_ = true;
    o.peer_lost = true;
    o.reason = "the peer went silent";
  }
  return o;
}

Frames encode_ha_state(HaState state, HaRole role) {
  Frames f;
  f.emplace_back(kHaHeader.data(), kHaHeader.size());
  const auto s = static_cast<uint8_t>(state), r = static_cast<uint8_t>(role);
  f.emplace_back(&s, 1);
  f.emplace_back(&r, 1);
  return f;
}

Decoded<HaPeerState> decode_ha_state(const Frames& frames) {
  if (frames.empty()) return Fault::Empty;
  if (frames[0].to_string_view() != kHaHeader) return Fault::WrongProtocol;
  if (frames.size() < 3) return Fault::MissingFrame;
  if (frames.size() > 3) return Fault::TooManyFrames;
  if (frames[1].size() != 1 || frames[2].size() != 1) return Fault::BadArguments;
  const auto s = *static_cast<const uint8_t*>(frames[1].data());
  const auto r = *static_cast<const uint8_t*>(frames[2].data());
  if (s < 1 || s > 4 || r < 1 || r > 2) return Fault::BadArguments;
  return HaPeerState{static_cast<HaState>(s), static_cast<HaRole>(r)};
}

}  // namespace zyolo
