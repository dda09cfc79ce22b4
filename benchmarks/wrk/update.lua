-- UPDATE (PUT) random seeded endpoints: new tags every time, and maxReplica 1 or 2 at random, so some
-- updates raise the accelerator count and take the quota path (namespace row lock + usage sum).
-- Arguments: token= ns_format= name_format= namespaces= per_namespace=
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

function init(args)
   opts = start(args)
   namespaces = tonumber(opts.namespaces)
   per_namespace = tonumber(opts.per_namespace)
   counter = 0
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   counter = counter + 1
   local ns = string.format(opts.ns_format, math.random(0, namespaces - 1))
   local name = string.format(opts.name_format, math.random(0, per_namespace - 1))
   local body = string.format(
      '{"tags": ["bench-%d-%d"], "compute": {"scaling": {"maxReplica": %d}}}',
      id, counter, math.random(1, 2)
   )
   return wrk.format("PUT", "/v2/endpoint/" .. ns .. "/" .. name, nil, body)
end
