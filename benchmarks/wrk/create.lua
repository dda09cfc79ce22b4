-- CREATE endpoints with unique names ("<prefix>-<thread>-<n>") in random seeded namespaces.
-- Arguments: token= ns_format= namespaces= prefix= body= (a JSON create body whose name is __NAME__)
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

function init(args)
   opts = start(args)
   namespaces = tonumber(opts.namespaces)
   counter = 0
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   counter = counter + 1
   local ns = string.format(opts.ns_format, math.random(0, namespaces - 1))
   local name = string.format("%s-%d-%d", opts.prefix, id, counter)
   local body = string.gsub(opts.body, "__NAME__", name)
   return wrk.format("POST", "/v2/endpoint/" .. ns, nil, body)
end
