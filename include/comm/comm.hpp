// comm — one include for everything.
#pragma once

#include "comm/errors.hpp"
#include "comm/net.hpp"
#include "comm/tls.hpp"
#include "comm/stream.hpp"
#if __has_include("comm/async.hpp")
#include "comm/async.hpp"
#endif
