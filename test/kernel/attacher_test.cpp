// The Attacher on real interfaces (root): TCX where the kernel has it, clsact when asked; TCX links pinned so
// that they outlive a killed daemon, adopted and swapped to the next daemon's programs in place; foreign TCX
// programs and tc filters refused; nothing left after detaching. Each test runs in a network namespace of its
// own (unshare), on a veth pair made there, and pins under a directory of its own.
#include "dataplane/attacher.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/bpf_objects.h"
#include "dataplane/tc_filters.h"
#include "dataplane/tcx_links.h"

namespace portcullis::dataplane {
namespace {

constexpr const char* kIface = "pc0";

int run(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str());
}

// A program of someone else's: a classifier that passes everything on (TCX_NEXT), using none of our maps.
int load_foreign_program() {
  const bpf_insn program[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, -1},  // r0 = TCX_NEXT
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  return bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "foreign", "GPL", program, 2, nullptr);
}

std::string pin_of(const std::string& pin_dir, const char* hook) {
  return pin_dir + "/link_" + kIface + "_" + hook;
}

class AttacherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "attaching programs needs root";
    ASSERT_EQ(::unshare(CLONE_NEWNET), 0) << "cannot make a network namespace";
    ASSERT_EQ(run(std::string("ip link add ") + kIface + " type veth peer name pc1"), 0);
    ASSERT_EQ(run(std::string("ip link set ") + kIface + " up"), 0);
    ifindex_ = static_cast<int>(::if_nametoindex(kIface));
    ASSERT_NE(ifindex_, 0);
    tcx_ = tcx_supported(ifindex_);
    options_.pin_dir = "/sys/fs/bpf/pc-attacher-test-" + std::to_string(getpid());
    options_.flow_table_entries = 4096;
    objects_ = BpfObjects::load(options_);
  }

  void TearDown() override {
    if (attacher_) EXPECT_EQ(attacher_->detach_all(), "");
    attacher_.reset();
    if (objects_) EXPECT_EQ(objects_->unpin(), "");
    objects_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(options_.pin_dir, ignored);
    if (foreign_link_ >= 0) ::close(foreign_link_);
    if (foreign_prog_ >= 0) ::close(foreign_prog_);
  }

  void start(TcAttachMode mode = TcAttachMode::automatic) {
    if (!objects_) objects_ = BpfObjects::load(options_);
    attacher_ = std::make_unique<Attacher>(objects_->map_ids(), objects_->pin_dir(), mode);
  }

  // The daemon dies of SIGKILL: descriptors close, nothing is detached or unpinned.
  void kill() {
    attacher_.reset();
    objects_.reset();
  }

  uint32_t prog_id(int fd) const {
    bpf_prog_info info{};
    uint32_t length = sizeof(info);
    EXPECT_EQ(bpf_obj_get_info_by_fd(fd, &info, &length), 0);
    return info.id;
  }

  std::optional<LinkInfo> pinned_link(const char* hook) const {
    const int fd = bpf_obj_get(pin_of(options_.pin_dir, hook).c_str());
    if (fd < 0) return std::nullopt;
    std::optional<LinkInfo> info = link_info(fd);
    ::close(fd);
    return info;
  }

  void attach_foreign_tcx(TcDirection direction) {
    foreign_prog_ = load_foreign_program();
    ASSERT_GE(foreign_prog_, 0);
    foreign_link_ = create_tcx_link(foreign_prog_, ifindex_, direction);
    ASSERT_GE(foreign_link_, 0);
  }

  int ifindex_ = 0;
  bool tcx_ = false;
  BpfObjectsOptions options_;
  std::unique_ptr<BpfObjects> objects_;
  std::unique_ptr<Attacher> attacher_;
  int foreign_prog_ = -1;
  int foreign_link_ = -1;
};

#define REQUIRE_TCX() \
  if (!tcx_) GTEST_SKIP() << "the kernel has no TCX"

TEST_F(AttacherTest, UsesTcxWhereTheKernelHasIt) {
  REQUIRE_TCX();
  start();
  const Attachment& egress = attacher_->attach(kIface, AttachPoint::tc_egress, objects_->inside_program());
  EXPECT_TRUE(egress.tcx);
  EXPECT_EQ(hook_name(egress), "tcx-egress");
  EXPECT_FALSE(egress.replaced);
  const Attachment& ingress = attacher_->attach(kIface, AttachPoint::tc_ingress, objects_->outside_program());
  EXPECT_EQ(hook_name(ingress), "tcx-ingress");

  EXPECT_EQ(list_tcx_programs(ifindex_, TcDirection::egress),
            std::vector<uint32_t>{prog_id(objects_->inside_program())});
  EXPECT_EQ(list_tcx_programs(ifindex_, TcDirection::ingress),
            std::vector<uint32_t>{prog_id(objects_->outside_program())});
  const std::optional<LinkInfo> link = pinned_link("tcx-egress");
  ASSERT_TRUE(link.has_value()) << "the link is pinned in the pin directory";
  EXPECT_EQ(link->type, kBpfLinkTypeTcx);
  EXPECT_EQ(link->ifindex, static_cast<uint32_t>(ifindex_));
  EXPECT_EQ(link->attach_type, kBpfTcxEgress);
  EXPECT_TRUE(list_tc_filters(ifindex_, TcDirection::ingress).empty()) << "no clsact filter beside it";

  EXPECT_EQ(attacher_->detach_all(), "");
  EXPECT_TRUE(list_tcx_programs(ifindex_, TcDirection::egress).empty());
  EXPECT_TRUE(list_tcx_programs(ifindex_, TcDirection::ingress).empty());
  EXPECT_FALSE(std::filesystem::exists(pin_of(options_.pin_dir, "tcx-egress")));
  EXPECT_FALSE(std::filesystem::exists(pin_of(options_.pin_dir, "tcx-ingress")));
}

TEST_F(AttacherTest, PinnedLinksOutliveAKilledDaemonAndTheNextOneSwapsItsProgramsIn) {
  REQUIRE_TCX();
  start();
  attacher_->attach(kIface, AttachPoint::tc_egress, objects_->inside_program());
  const uint32_t first_prog = prog_id(objects_->inside_program());
  const std::optional<LinkInfo> before = pinned_link("tcx-egress");
  ASSERT_TRUE(before.has_value());
  kill();
  EXPECT_EQ(list_tcx_programs(ifindex_, TcDirection::egress), std::vector<uint32_t>{first_prog})
      << "the killed daemon's program stays attached (fail closed)";

  start();
  ASSERT_TRUE(objects_->adopted());
  const Attachment& adopted = attacher_->attach(kIface, AttachPoint::tc_egress, objects_->inside_program());
  EXPECT_TRUE(adopted.replaced);
  EXPECT_EQ(hook_name(adopted), "tcx-egress");
  const uint32_t second_prog = prog_id(objects_->inside_program());
  EXPECT_NE(second_prog, first_prog);
  EXPECT_EQ(list_tcx_programs(ifindex_, TcDirection::egress), std::vector<uint32_t>{second_prog});
  const std::optional<LinkInfo> after = pinned_link("tcx-egress");
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->id, before->id) << "the same link, its program swapped in place";
  EXPECT_EQ(after->prog_id, second_prog);

  // A failed start keeps adopted links: they enforce the pinned policy.
  EXPECT_EQ(attacher_->detach_new(), "");
  EXPECT_EQ(list_tcx_programs(ifindex_, TcDirection::egress), std::vector<uint32_t>{second_prog});
  EXPECT_TRUE(std::filesystem::exists(pin_of(options_.pin_dir, "tcx-egress")));
  start();
  EXPECT_TRUE(attacher_->attach(kIface, AttachPoint::tc_egress, objects_->inside_program()).replaced);
}

TEST_F(AttacherTest, AFailedStartTakesItsNewLinksOffAgain) {
  REQUIRE_TCX();
  start();
  attacher_->attach(kIface, AttachPoint::tc_egress, objects_->inside_program());
  EXPECT_EQ(attacher_->detach_new(), "");
  EXPECT_TRUE(list_tcx_programs(ifindex_, TcDirection::egress).empty());
  EXPECT_FALSE(std::filesystem::exists(pin_of(options_.pin_dir, "tcx-egress")));
}

TEST_F(AttacherTest, ALinkWhoseInterfaceWentIsReplacedByANewOne) {
  REQUIRE_TCX();
  start();
  attacher_->attach(kIface, AttachPoint::tc_ingress, objects_->outside_program());
  kill();
  ASSERT_EQ(run(std::string("ip link del ") + kIface), 0);
  ASSERT_EQ(run(std::string("ip link add ") + kIface + " type veth peer name pc1"), 0);
  ifindex_ = static_cast<int>(::if_nametoindex(kIface));
  const std::optional<LinkInfo> defunct = pinned_link("tcx-ingress");
  ASSERT_TRUE(defunct.has_value());
  EXPECT_EQ(defunct->ifindex, 0u);

  start();
  const Attachment& attachment = attacher_->attach(kIface, AttachPoint::tc_ingress, objects_->outside_program());
  EXPECT_FALSE(attachment.replaced);
  EXPECT_EQ(list_tcx_programs(ifindex_, TcDirection::ingress),
            std::vector<uint32_t>{prog_id(objects_->outside_program())});
  const std::optional<LinkInfo> fresh = pinned_link("tcx-ingress");
  ASSERT_TRUE(fresh.has_value());
  EXPECT_NE(fresh->id, defunct->id);
  EXPECT_EQ(fresh->ifindex, static_cast<uint32_t>(ifindex_));
}

TEST_F(AttacherTest, NeverRunsBesideAForeignTcxProgram) {
  REQUIRE_TCX();
  attach_foreign_tcx(TcDirection::ingress);
  const uint32_t foreign = prog_id(foreign_prog_);
  start();
  try {
    attacher_->attach(kIface, AttachPoint::tc_ingress, objects_->outside_program());
    FAIL() << "attached beside a foreign TCX program";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("pc0 (tcx-ingress): a TCX program 'foreign' (id " + std::to_string(foreign) +
                                         ") is attached already and is not portcullis's"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(list_tcx_programs(ifindex_, TcDirection::ingress), std::vector<uint32_t>{foreign}) << "left alone";
  EXPECT_FALSE(std::filesystem::exists(pin_of(options_.pin_dir, "tcx-ingress")));
  EXPECT_TRUE(attacher_->attachments().empty());
}

TEST_F(AttacherTest, NeverRunsBeforeAForeignClsactFilter) {
  REQUIRE_TCX();
  ASSERT_EQ(run(std::string("tc qdisc add dev ") + kIface + " clsact"), 0);
  ASSERT_EQ(run(std::string("tc filter add dev ") + kIface + " ingress pref 7 u32 match u32 0 0 classid 1:1"), 0);
  start();
  try {
    attacher_->attach(kIface, AttachPoint::tc_ingress, objects_->outside_program());
    FAIL() << "attached in front of a foreign tc filter";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("pc0 (tcx-ingress): a 'u32' filter is attached already"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(list_tcx_programs(ifindex_, TcDirection::ingress).empty());
  const std::vector<TcFilter> filters = list_tc_filters(ifindex_, TcDirection::ingress);
  EXPECT_FALSE(filters.empty());
  for (const TcFilter& filter : filters) EXPECT_EQ(filter.kind, "u32") << "only the foreign filter is there";
}

TEST_F(AttacherTest, ClsactWhenAsked) {
  start(TcAttachMode::clsact);
  const Attachment& attachment = attacher_->attach(kIface, AttachPoint::tc_ingress, objects_->outside_program());
  EXPECT_FALSE(attachment.tcx);
  EXPECT_EQ(hook_name(attachment), "tc-ingress");
  const std::vector<TcFilter> filters = list_tc_filters(ifindex_, TcDirection::ingress);
  ASSERT_EQ(filters.size(), 1u);
  EXPECT_EQ(filters[0].bpf_prog_id, prog_id(objects_->outside_program()));
  if (tcx_) EXPECT_TRUE(list_tcx_programs(ifindex_, TcDirection::ingress).empty());

  EXPECT_EQ(attacher_->detach_all(), "");
  EXPECT_TRUE(list_tc_filters(ifindex_, TcDirection::ingress).empty());
  EXPECT_NE(run(std::string("tc qdisc show dev ") + kIface + " | grep -q clsact"), 0) << "the qdisc goes too";
}

TEST_F(AttacherTest, ClsactRefusesATcxProgramThatWouldRunBeforeIt) {
  REQUIRE_TCX();
  attach_foreign_tcx(TcDirection::egress);
  start(TcAttachMode::clsact);
  EXPECT_THROW(attacher_->attach(kIface, AttachPoint::tc_egress, objects_->inside_program()), std::runtime_error);
  EXPECT_TRUE(list_tc_filters(ifindex_, TcDirection::egress).empty());
}

TEST_F(AttacherTest, TakesOverFromADaemonThatUsedClsact) {
  REQUIRE_TCX();
  start(TcAttachMode::clsact);
  attacher_->attach(kIface, AttachPoint::tc_ingress, objects_->outside_program());
  kill();
  ASSERT_EQ(list_tc_filters(ifindex_, TcDirection::ingress).size(), 1u);

  start();
  const Attachment& attachment = attacher_->attach(kIface, AttachPoint::tc_ingress, objects_->outside_program());
  EXPECT_TRUE(attachment.tcx);
  EXPECT_TRUE(attachment.replaced);
  EXPECT_EQ(list_tcx_programs(ifindex_, TcDirection::ingress),
            std::vector<uint32_t>{prog_id(objects_->outside_program())});
  EXPECT_TRUE(list_tc_filters(ifindex_, TcDirection::ingress).empty()) << "the old filter is removed";
  EXPECT_NE(run(std::string("tc qdisc show dev ") + kIface + " | grep -q clsact"), 0) << "and its qdisc";
}

}  // namespace
}  // namespace portcullis::dataplane
