-- GET of one path, optionally paced: with delay_ms=N each connection waits N ms between requests, so the
-- offered load stays below saturation and latency measures the proxy's work, not its queue.
dofile("benchmarks/wrk/common.lua")

local pause = 0

function init(args)
   local opts = options(args)
   pause = tonumber(opts.delay_ms or "0")
end

function delay()
   return pause
end
