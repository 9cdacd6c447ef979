// The Binary Star state machine (src/wire/binary_star.hpp), pure: every state x event for both
// roles, the client's vote, the primary that waits out its peer's expiry before serving, the
// anomalies, and the state message's codec with garbage.
#include <doctest/doctest.h>

#include <optional>
#include <string>

#include "src/wire/binary_star.hpp"

namespace {

using namespace std::chrono_literals;
using zyolo::BinaryStar;
using zyolo::HaAnomaly;
using zyolo::HaEvent;
using zyolo::HaRole;
using zyolo::HaState;

using Clock = BinaryStar::Clock;
constexpr auto kHeartbeat = 100ms;
constexpr int kMissed = 2;  // the peer expires 200 ms after it was last heard

HaRole other(HaRole r) {
  return r == HaRole::Primary ? HaRole::Backup : HaRole::Primary;
}

// A machine of `role` brought into `state` by the events a real pair would see; `t` is its clock,
// which it advances past whatever expiry it needs.
BinaryStar in_state(HaRole role, HaState state, Clock::time_point& t) {
  BinaryStar b(role, kHeartbeat, kMissed, t);
  const auto peer = other(role);
  if (state == HaState::Active) {
    if (role == HaRole::Primary) {
      (void)b.on_peer(HaState::Backup, peer, t);
    } else {  // the primary was active, then went silent, then a client came
      (void)b.on_peer(HaState::Active, peer, t);
      t += 300ms;
      REQUIRE(b.on_client_request(t).serve);
    }
  } else if (state == HaState::Passive) {
    (void)b.on_peer(HaState::Active, peer, t);
  }
  REQUIRE(b.state() == state);
  REQUIRE(b.role() == role);
  return b;
}

struct Row {
  HaRole role;
  HaState state;
  HaEvent event;
  HaState expected;
  HaAnomaly anomaly;
  bool serve;
};

constexpr auto P = HaRole::Primary, B = HaRole::Backup;
constexpr auto PRIMARY = HaState::Primary, BACKUP = HaState::Backup, ACTIVE = HaState::Active,
               PASSIVE = HaState::Passive;
constexpr auto PP = HaEvent::PeerPrimary, PB = HaEvent::PeerBackup, PA = HaEvent::PeerActive,
               PS = HaEvent::PeerPassive, CR = HaEvent::ClientRequest;
constexpr auto None = HaAnomaly::None, Dual = HaAnomaly::DualActive, DualP = HaAnomaly::DualPassive,
               Same = HaAnomaly::SameRole;

// Every state a role can be in x every event, the peer not expired (heard 10 ms before, or the
// machine started then) and of the other role (the ACTIVE backup's peer has expired: it became
// ACTIVE by a client's vote; nothing below depends on it). (A PRIMARY is only ever the primary, a
// BACKUP the backup.) PeerPrimary and PeerBackup carry the peer's role in the state itself: a
// machine that hears its own is paired with a peer of the same role.
// clang-format off
constexpr Row kTable[] = {
    {P, PRIMARY, PP, PRIMARY, Same, false},  {P, PRIMARY, PB, ACTIVE, None, false},
    {P, PRIMARY, PA, PASSIVE, None, false},  {P, PRIMARY, PS, PRIMARY, None, false},
    {P, PRIMARY, CR, PRIMARY, None, false},
    {B, BACKUP, PP, BACKUP, None, false},    {B, BACKUP, PB, BACKUP, Same, false},
    {B, BACKUP, PA, PASSIVE, None, false},   {B, BACKUP, PS, BACKUP, None, false},
    {B, BACKUP, CR, BACKUP, None, false},
    {P, ACTIVE, PP, ACTIVE, Same, false},    {P, ACTIVE, PB, ACTIVE, None, false},
    {P, ACTIVE, PA, ACTIVE, Dual, false},    {P, ACTIVE, PS, ACTIVE, None, false},
    {P, ACTIVE, CR, ACTIVE, None, true},
    {B, ACTIVE, PP, ACTIVE, None, false},    {B, ACTIVE, PB, ACTIVE, Same, false},
    {B, ACTIVE, PA, PASSIVE, Dual, false},   {B, ACTIVE, PS, ACTIVE, None, false},
    {B, ACTIVE, CR, ACTIVE, None, true},
    {P, PASSIVE, PP, PASSIVE, Same, false},  {P, PASSIVE, PB, ACTIVE, None, false},
    {P, PASSIVE, PA, PASSIVE, None, false},  {P, PASSIVE, PS, ACTIVE, DualP, false},
    {P, PASSIVE, CR, PASSIVE, None, false},
    {B, PASSIVE, PP, ACTIVE, None, false},   {B, PASSIVE, PB, PASSIVE, Same, false},
    {B, PASSIVE, PA, PASSIVE, None, false},  {B, PASSIVE, PS, PASSIVE, DualP, false},
    {B, PASSIVE, CR, PASSIVE, None, false},
};
// clang-format on

std::string name_of(const Row& r) {
  static constexpr const char* kEvents[] = {
      "", "PEER_PRIMARY", "PEER_BACKUP", "PEER_ACTIVE", "PEER_PASSIVE", "CLIENT_REQUEST"};
  return std::string(zyolo::ha_role_name(r.role)) + " " +
         std::string(zyolo::ha_state_name(r.state)) + " + " + kEvents[static_cast<int>(r.event)];
}

}  // namespace

TEST_CASE("every state x event, the peer heard and of the other role") {
  for (const Row& r : kTable) {
    INFO(name_of(r));
    auto t = Clock::now();
    BinaryStar b = in_state(r.role, r.state, t);
    REQUIRE(b.state() == r.state);
    t += 10ms;
    const std::optional<HaRole> peer_role =
        r.event == PA || r.event == PS ? std::optional(other(r.role)) : std::nullopt;
    const auto o = b.on_event(r.event, t, peer_role);
    CHECK(o.from == r.state);
    CHECK(o.to == r.expected);
    CHECK(b.state() == r.expected);
    CHECK(o.anomaly == r.anomaly);
    CHECK(o.serve == r.serve);
    CHECK(o.changed() == (r.state != r.expected));
    if (o.changed() || o.anomaly != None) CHECK_FALSE(o.reason.empty());
  }
  // All 30 rows: 6 (role, state) pairs x 5 events.
  CHECK(std::size(kTable) == 30);
}

TEST_CASE("a client request after the peer's expiry, in each state") {
  for (const auto& [role, state, serves] : {std::tuple{P, PRIMARY, true},
                                            {B, BACKUP, false},
                                            {P, ACTIVE, true},
                                            {B, ACTIVE, true},
                                            {P, PASSIVE, true},
                                            {B, PASSIVE, true}}) {
    INFO(zyolo::ha_role_name(role), " ", zyolo::ha_state_name(state));
    auto t = Clock::now();
    BinaryStar b = in_state(role, state, t);
    t += 200ms;  // exactly heartbeat x missed after it was last heard: expired
    const auto o = b.on_client_request(t);
    CHECK(o.serve == serves);
    CHECK(b.state() == (serves ? ACTIVE : state));
  }
}

TEST_CASE("the backup never becomes active without a client request after the peer's expiry") {
  auto t = Clock::now();
  BinaryStar b(B, kHeartbeat, kMissed, t);
  // A lone backup never serves, however long it waits and however many clients come.
  for (int i = 0; i < 20; ++i) {
    t += 100ms;
    CHECK_FALSE(b.on_client_request(t).serve);
    (void)b.tick(t);
  }
  CHECK(b.state() == BACKUP);
  (void)b.on_peer(ACTIVE, P, t);
  CHECK(b.state() == PASSIVE);
  // The primary goes silent: time alone changes nothing.
  for (int i = 0; i < 50; ++i) {
    t += 100ms;
    const auto o = b.tick(t);
    CHECK_FALSE(o.changed());
    CHECK(o.peer_lost == (i == 1));  // reported once, when the expiry passes
  }
  CHECK(b.state() == PASSIVE);
  // A client before the expiry is refused; after it, the client's vote makes it ACTIVE.
  t += 1s;
  (void)b.on_peer(ACTIVE, P, t);
  t += 199ms;
  CHECK_FALSE(b.on_client_request(t).serve);
  CHECK(b.state() == PASSIVE);
  t += 1ms;
  const auto o = b.on_client_request(t);
  CHECK(o.serve);
  CHECK(o.from == PASSIVE);
  CHECK(o.to == ACTIVE);
  CHECK(o.reason == "a client request came");
  CHECK(b.peer_silent_s(t) == doctest::Approx(0.2));
}

TEST_CASE("split brain refused: the link cut, clients still reach the primary") {
  auto t = Clock::now();
  BinaryStar primary(P, kHeartbeat, kMissed, t), backup(B, kHeartbeat, kMissed, t);
  (void)primary.on_peer(BACKUP, B, t);
  (void)backup.on_peer(ACTIVE, P, t);
  REQUIRE(primary.state() == ACTIVE);
  REQUIRE(backup.state() == PASSIVE);
  // The link between them is cut: neither hears the other again. Clients keep reaching the
  // primary, none the backup (their vote says the primary is alive).
  for (int i = 0; i < 100; ++i) {
    t += 50ms;
    CHECK(primary.on_client_request(t).serve);
    (void)primary.tick(t);
    (void)backup.tick(t);
    CHECK_FALSE(primary.state() == backup.state());
  }
  CHECK(primary.state() == ACTIVE);
  CHECK(backup.state() == PASSIVE);
}

TEST_CASE(
    "the primary restarted while the backup is active goes passive, and serves nobody first") {
  auto t = Clock::now();
  BinaryStar backup(B, kHeartbeat, kMissed, t);
  {
    BinaryStar primary(P, kHeartbeat, kMissed, t);
    (void)primary.on_peer(BACKUP, B, t);
    (void)backup.on_peer(ACTIVE, P, t);
  }  // the primary dies
  t += 300ms;
  REQUIRE(backup.on_client_request(t).serve);
  REQUIRE(backup.state() == ACTIVE);
  // It comes back; clients reach it before it hears the backup. (bstar.c would serve them.)
  BinaryStar primary(P, kHeartbeat, kMissed, t);
  for (int i = 0; i < 3; ++i) {
    t += 50ms;
    CHECK_FALSE(primary.on_client_request(t).serve);
  }
  CHECK(primary.state() == PRIMARY);
  (void)backup.on_peer(PRIMARY, P, t);  // the backup hears it: stays ACTIVE
  CHECK(backup.state() == ACTIVE);
  const auto o = primary.on_peer(ACTIVE, B, t);
  CHECK(o.to == PASSIVE);
  CHECK(o.reason == "the backup is active");
  CHECK(primary.state() == PASSIVE);
  t += 10ms;
  CHECK_FALSE(primary.on_client_request(t).serve);
}

TEST_CASE("a primary alone serves only once its peer's expiry has passed") {
  auto t = Clock::now();
  BinaryStar primary(P, kHeartbeat, kMissed, t);
  CHECK_FALSE(primary.on_client_request(t + 199ms).serve);
  const auto o = primary.on_client_request(t + 200ms);
  CHECK(o.serve);
  CHECK(o.to == ACTIVE);
  CHECK(o.reason == "the peer never answered, a client request came");
  CHECK_FALSE(primary.tick(t + 10s).peer_lost);  // never heard: nothing to lose
}

TEST_CASE("both started as primary: reported on every message, and neither ever serves") {
  auto t = Clock::now();
  BinaryStar a(P, kHeartbeat, kMissed, t), b(P, kHeartbeat, kMissed, t);
  for (int i = 0; i < 20; ++i) {
    t += 100ms;
    CHECK(a.on_peer(b.state(), b.role(), t).anomaly == Same);
    CHECK(b.on_peer(a.state(), a.role(), t).anomaly == Same);
    CHECK_FALSE(a.on_client_request(t).serve);
    CHECK_FALSE(b.on_client_request(t).serve);
  }
  CHECK(a.state() == PRIMARY);
  CHECK(b.state() == PRIMARY);
  // Roles mismatched in a state message that carries one (ACTIVE with our role) count too.
  BinaryStar c(B, kHeartbeat, kMissed, t);
  CHECK(c.on_peer(ACTIVE, B, t).anomaly == Same);
  CHECK(c.state() == BACKUP);
}

TEST_CASE("a pair driven through its whole life is never both active") {
  auto t = Clock::now();
  BinaryStar primary(P, kHeartbeat, kMissed, t), backup(B, kHeartbeat, kMissed, t);
  auto exchange = [&] {
    const auto ps = primary.state(), bs = backup.state();
    (void)primary.on_peer(bs, B, t);
    (void)backup.on_peer(ps, P, t);
  };
  auto never_both = [&] { CHECK_FALSE((primary.active() && backup.active())); };
  for (int i = 0; i < 3; ++i, t += 100ms) exchange(), never_both();
  CHECK(primary.state() == ACTIVE);
  CHECK(backup.state() == PASSIVE);
  // The primary dies; a client comes to the backup after the expiry.
  t += 300ms;
  CHECK(backup.on_client_request(t).serve);
  // The primary restarts: the first exchange makes it PASSIVE.
  primary = BinaryStar(P, kHeartbeat, kMissed, t);
  for (int i = 0; i < 3; ++i, t += 100ms) exchange(), never_both();
  CHECK(primary.state() == PASSIVE);
  CHECK(backup.state() == ACTIVE);
  // The backup restarts: the primary takes over, the backup goes PASSIVE.
  backup = BinaryStar(B, kHeartbeat, kMissed, t);
  for (int i = 0; i < 3; ++i, t += 100ms) exchange(), never_both();
  CHECK(primary.state() == ACTIVE);
  CHECK(backup.state() == PASSIVE);
}

TEST_CASE("the state message: round trip, and garbage is a fault") {
  for (const HaState s : zyolo::kHaStates)
    for (const HaRole r : {P, B}) {
      auto d = zyolo::decode_ha_state(zyolo::encode_ha_state(s, r));
      REQUIRE(d);
      CHECK(d->state == s);
      CHECK(d->role == r);
    }
  using zyolo::Fault;
  using zyolo::Frames;
  auto frames = [](std::initializer_list<std::string> parts) {
    Frames f;
    for (const auto& p : parts) f.emplace_back(p.data(), p.size());
    return f;
  };
  CHECK(zyolo::decode_ha_state(Frames{}).fault() == Fault::Empty);
  CHECK(zyolo::decode_ha_state(frames({"ZHA02", "\x01", "\x01"})).fault() == Fault::WrongProtocol);
  CHECK(zyolo::decode_ha_state(frames({"ZHA01", "\x01"})).fault() == Fault::MissingFrame);
  CHECK(zyolo::decode_ha_state(frames({"ZHA01", "\x01", "\x01", ""})).fault() ==
        Fault::TooManyFrames);
  CHECK(zyolo::decode_ha_state(frames({"ZHA01", "\x05", "\x01"})).fault() == Fault::BadArguments);
  CHECK(zyolo::decode_ha_state(frames({"ZHA01", "\x01", "\x03"})).fault() == Fault::BadArguments);
  CHECK(zyolo::decode_ha_state(frames({"ZHA01", "", "\x01"})).fault() == Fault::BadArguments);
  CHECK(zyolo::decode_ha_state(frames({"ZHA01", "\x01\x01", "\x01"})).fault() ==
        Fault::BadArguments);
}
