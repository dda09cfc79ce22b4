-- GET one endpoint, chosen at random among the seeded ones.
-- Arguments: token= ns_format= name_format= namespaces= per_namespace=
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

function init(args)
   opts = start(args)
   namespaces = tonumber(opts.namespaces)
   per_namespace = tonumber(opts.per_namespace)
end

function request()
   local ns = string.format(opts.ns_format, math.random(0, namespaces - 1))
   local name = string.format(opts.name_format, math.random(0, per_namespace - 1))
   return wrk.format("GET", "/v2/endpoint/" .. ns .. "/" .. name)
end
