-- Shared by the phase scripts (loaded with dofile): key=value arguments, a per-thread tally of every
-- response status, and done() printing one line "WRK_JSON {...}" that benchmarks/api.py parses.
-- Latencies are wrk's HdrHistogram values in microseconds; the Python side converts them to ms.

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

statuses = {}

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

-- Arguments after "--" on the wrk command line, as key=value (the value may contain '=').
function options(args)
   local opts = {}
   for _, arg in ipairs(args) do
      local key, value = arg:match("^([^=]+)=(.*)$")
      if key == nil then
         error("argument " .. arg .. " is not key=value")
      end
      opts[key] = value
   end
   return opts
end

-- Common per-thread set-up: the bearer token and a random seed distinct per thread.
function start(args)
   local opts = options(args)
   wrk.headers["Authorization"] = "Bearer " .. opts.token
   math.randomseed(os.time() * 1000 + id * 7919)
   return opts
end

local function percentiles(latency)
   local out = {}
   for _, p in ipairs({ 50, 90, 99, 99.9 }) do
      table.insert(out, string.format('"%s": %d', tostring(p), latency:percentile(p)))
   end
   return "{" .. table.concat(out, ", ") .. "}"
end

function done(summary, latency, requests)
   local merged = {}
   for _, thread in ipairs(threads) do
      local tally = thread:get("statuses") or {}
      for status, count in pairs(tally) do
         merged[status] = (merged[status] or 0) + count
      end
   end
   local parts = {}
   for status, count in pairs(merged) do
      table.insert(parts, string.format('"%d": %d', status, count))
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"duration_us": %d, "requests": %d, "bytes": %d, "statuses": {%s}, '
         .. '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, "status_errors": %d, '
         .. '"latency_us": {"min": %d, "max": %d, "mean": %.1f, "stdev": %.1f, "percentiles": %s}}\n',
      summary.duration, summary.requests, summary.bytes, table.concat(parts, ", "),
      e.connect, e.read, e.write, e.timeout, e.status,
      latency.min, latency.max, latency.mean, latency.stdev, percentiles(latency)
   ))
end
