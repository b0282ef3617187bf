-- wrk -s bench/login.lua: POST /v1/auth/login for one registered user.
wrk.method = "POST"
wrk.path = "/v1/auth/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"login": "bench", "password": "Correct-Horse-Battery-9!"}'
