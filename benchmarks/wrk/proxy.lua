-- GET of one path, optionally paced: with delay_ms=N each connection waits a random time (exponential, mean N
-- ms) between requests. The offered load stays below saturation and arrivals are spread out as independent
-- clients' would be, so latency measures the proxy's work rather than a queue of synchronized bursts.
dofile("benchmarks/wrk/common.lua")

local pause = 0

function init(args)
   local opts = options(args)
   pause = tonumber(opts.delay_ms or "0")
   math.randomseed(os.time() * 1000 + id * 7919)
end

function delay()
   if pause <= 0 then
      return 0
   end
   return math.floor(-math.log(1 - math.random()) * pause)
end
