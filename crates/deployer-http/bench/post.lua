-- POSTs the body in $BODY with the registry's headers and $TOKEN, for wrk.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/vnd.docker.distribution.events.v1+json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
local file = assert(io.open(os.getenv("BODY"), "rb"))
wrk.body = file:read("*a")
file:close()
