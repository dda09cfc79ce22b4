-- LIST one namespace, chosen at random among the seeded ones.
-- Arguments: token= ns_format= namespaces=
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

function init(args)
   opts = start(args)
   namespaces = tonumber(opts.namespaces)
end

function request()
   local ns = string.format(opts.ns_format, math.random(0, namespaces - 1))
   return wrk.format("GET", "/v2/endpoint/" .. ns)
end
