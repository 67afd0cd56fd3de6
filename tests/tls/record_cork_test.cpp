// The transport's write coalescing (src/tls/record_cork.hpp) on a recording send: corked records
// leave together and in order, nothing overtakes what is pending, a short send keeps the rest, and
// the buffer is small for a handshake's last flight, whole for full records, gone once empty.
#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

#include "tls/record_cork.hpp"

namespace {

using comm::detail::io_result;
using comm::detail::record_cork;

// Each send is recorded; `room` bytes at most are taken in all before it says EAGAIN.
struct recording_send {
  std::vector<std::string> sends;
  std::size_t room = ~std::size_t{0};
  io_result operator()(const void* d, std::size_t n) {
    if (room == 0) return {0, EAGAIN};
    std::size_t take = std::min(n, room);
    room -= take;
    sends.emplace_back(static_cast<const char*>(d), take);
    return {take, 0};
  }
};

std::string record(char c, std::size_t n) { return std::string(n, c); }

class RecordCork : public ::testing::Test {
 protected:
  io_result write(const std::string& r) { return cork.write(r.data(), r.size(), send); }
  io_result flush() { return cork.flush(send); }
  record_cork cork;
  recording_send send;
};

TEST_F(RecordCork, CorkedRecordsLeaveInOneSendInOrder) {
  cork.cork();
  for (char c : {'a', 'b', 'c'}) {
    std::string r = record(c, 100);
    EXPECT_EQ(write(r).bytes, 100u);
  }
  cork.uncork();
  EXPECT_TRUE(send.sends.empty());
  EXPECT_EQ(cork.pending(), 300u);
  EXPECT_EQ(flush().error, 0);
  ASSERT_EQ(send.sends.size(), 1u);
  EXPECT_EQ(send.sends[0], record('a', 100) + record('b', 100) + record('c', 100));
  EXPECT_EQ(cork.pending(), 0u);
  EXPECT_EQ(cork.buffer_size(), 0u);
}

TEST_F(RecordCork, HeldFlightGoesBeforeALaterUncorkedWrite) {
  cork.cork();
  std::string tickets = record('t', 300);
  write(tickets);
  cork.uncork();  // held: nothing sent yet
  std::string reply = record('r', 64);
  EXPECT_EQ(write(reply).bytes, 64u);
  ASSERT_EQ(send.sends.size(), 2u);
  EXPECT_EQ(send.sends[0], tickets);
  EXPECT_EQ(send.sends[1], reply);
}

TEST_F(RecordCork, SmallBufferForAFlightWholeOneForFullRecords) {
  cork.cork();
  std::string finished = record('f', 300);
  write(finished);
  EXPECT_EQ(cork.buffer_size(), 4096u);
  std::string full = record('x', 16 * 1024 + 22);
  write(full);  // grows once, keeping what it held
  EXPECT_EQ(cork.buffer_size(), record_cork::capacity);
  EXPECT_EQ(flush().error, 0);
  ASSERT_EQ(send.sends.size(), 1u);
  EXPECT_EQ(send.sends[0], finished + full);
  EXPECT_EQ(cork.buffer_size(), 0u);
  write(full);  // a full record first: the whole buffer at once
  EXPECT_EQ(cork.buffer_size(), record_cork::capacity);
}

TEST_F(RecordCork, FullCorkMakesRoomAndAShortSendKeepsTheRestInOrder) {
  const std::size_t len = 16 * 1024 + 22;  // a full record
  std::vector<std::string> records;
  for (int i = 0; i < 6; ++i) records.push_back(record(static_cast<char>('a' + i), len));
  cork.cork();
  send.room = 0;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(write(records[i]).bytes, len);  // within capacity
  EXPECT_TRUE(send.sends.empty());
  EXPECT_TRUE(cork.full());
  // The sixth does not fit: the cork sends to make room, the socket takes 10000 bytes, then EAGAIN.
  send.room = 10000;
  EXPECT_EQ(write(records[5]).error, EAGAIN);
  ASSERT_EQ(send.sends.size(), 1u);
  EXPECT_EQ(send.sends[0], records[0].substr(0, 10000));
  EXPECT_EQ(cork.pending(), 5 * len - 10000);
  // Room again: the retried write goes after the rest, nothing lost or reordered.
  send.room = ~std::size_t{0};
  EXPECT_EQ(write(records[5]).bytes, len);
  EXPECT_EQ(flush().error, 0);
  std::string sent, expected;
  for (auto& x : send.sends) sent += x;
  for (auto& r : records) expected += r;
  EXPECT_EQ(sent, expected);
}

}  // namespace
