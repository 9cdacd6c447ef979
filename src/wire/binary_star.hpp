// Binary Star (the ZeroMQ guide, chapter 4): a primary and a backup broker, one of them active.
// This file is the pair's state machine, pure (no sockets; time is passed in), and the codec of
// the state message the two publish to each other every ha.heartbeat_ms:
//
//   ha-state = "ZHA01" state role      state: one byte, 1 PRIMARY 2 BACKUP 3 ACTIVE 4 PASSIVE
//                                      role:  one byte, 1 primary 2 backup (what it was started as)
//
// The states and what moves them ("expired": the peer silent for heartbeat x missed, or never
// heard since the start that long ago; a request not served is dropped, the client retries):
//
//   PRIMARY --peer BACKUP--------------------------------> ACTIVE
//   PRIMARY --client request, expired--------------------> ACTIVE   (serves it)
//   PRIMARY --peer ACTIVE--------------------------------> PASSIVE
//   BACKUP  --peer ACTIVE--------------------------------> PASSIVE  (a client request: dropped)
//   PASSIVE --peer PRIMARY or BACKUP (it restarted)------> ACTIVE
//   PASSIVE --client request, expired--------------------> ACTIVE   (serves it: failover)
//   PASSIVE --peer PASSIVE, we are the primary-----------> ACTIVE   (dual passive, reported)
//   ACTIVE  --peer ACTIVE, we are the backup-------------> PASSIVE  (dual active, reported)
//   any     --peer of our own role-----------------------> (same)   (misconfigured, reported)
//
// Guarantees: only an ACTIVE broker serves. A BACKUP never serves (it waits to have seen the
// primary active), a PASSIVE only once the peer has been silent for heartbeat x missed AND a
// client came to it (the client's vote: it cannot reach the other one, so the other is likely
// down and not only cut off from this broker). The guide's bstar.c lets a PRIMARY that heard
// nothing yet take a client at once; here it also waits out the peer's expiry first, so a primary
// restarted while the backup is active hears the backup (and goes PASSIVE) before it could serve.
// Anomalies are reported, never fatal: both ACTIVE (the broker started as backup yields), both
// PASSIVE (the one started as primary takes over), both started with the same role (nothing
// changes: a pair of primaries never serves until one is gone, and is reported every time).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "src/wire/frames.hpp"

namespace zyolo {

enum class HaRole : uint8_t { Primary = 1, Backup = 2 };
enum class HaState : uint8_t { Primary = 1, Backup = 2, Active = 3, Passive = 4 };
// What the state machine reacts to: the peer's state as it publishes it, and a client's request.
enum class HaEvent { PeerPrimary = 1, PeerBackup, PeerActive, PeerPassive, ClientRequest };
enum class HaAnomaly { None, DualActive, DualPassive, SameRole };

std::string_view ha_state_name(HaState s);  // "PRIMARY", "BACKUP", "ACTIVE", "PASSIVE"
std::string_view ha_role_name(HaRole r);    // "primary", "backup"
std::string_view ha_anomaly_name(HaAnomaly a);
inline constexpr HaState kHaStates[] = {HaState::Primary, HaState::Backup, HaState::Active,
                                        HaState::Passive};

// What one event did.
struct HaOutcome {
  HaState from{}, to{};     // equal when nothing changed
  std::string_view reason;  // why it changed, or what the anomaly is; "" when neither
  HaAnomaly anomaly = HaAnomaly::None;
  bool serve = false;      // a ClientRequest: serve it (false: drop it)
  bool peer_lost = false;  // tick(): the peer, heard before, has just gone silent
  bool changed() const { return from != to; }
};

class BinaryStar {
 public:
  using Clock = std::chrono::steady_clock;
  // Starts in PRIMARY or BACKUP, as `role` says. The peer counts as silent until heard, and its
  // expiry is `now` + heartbeat x missed: nothing is served before then.
  BinaryStar(HaRole role, std::chrono::milliseconds heartbeat, int missed, Clock::time_point now);

  HaState state() const { return state_; }
  HaRole role() const { return role_; }
  bool active() const { return state_ == HaState::Active; }

  // The peer's state message (its role, when the message carries it: ours must differ).
  HaOutcome on_peer(HaState peer, std::optional<HaRole> peer_role, Clock::time_point now);
  // A client's request came: serve it or not, perhaps becoming ACTIVE first.
  HaOutcome on_client_request(Clock::time_point now);
  // The same by event (the tests go over every state x event with it).
  HaOutcome on_event(HaEvent e, Clock::time_point now, std::optional<HaRole> peer_role = {});
  // Time passing: reports once (peer_lost) when the peer, heard before, has gone silent.
  HaOutcome tick(Clock::time_point now);

  bool peer_expired(Clock::time_point now) const { return now >= peer_expiry_; }
  bool peer_heard() const { return heard_; }
  // How long the peer has been silent: since it was last heard, or since the start.
  double peer_silent_s(Clock::time_point now) const;

 private:
  HaOutcome become(HaState to, std::string_view reason, HaAnomaly anomaly = HaAnomaly::None);

  HaRole role_;
  HaState state_;
  std::chrono::milliseconds expiry_;  // heartbeat x missed
  Clock::time_point last_heard_, peer_expiry_;
  bool heard_ = false, lost_reported_ = false;
};

// The state message, and its decoding (a malformed one is a fault, never a crash).
struct HaPeerState {
  HaState state{};
  HaRole role{};
};
Frames encode_ha_state(HaState state, HaRole role);
Decoded<HaPeerState> decode_ha_state(const Frames& frames);

}  // namespace zyolo
