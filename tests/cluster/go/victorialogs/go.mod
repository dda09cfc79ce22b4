module local/dais-envtest-victorialogs

go 1.26.5

require github.com/VictoriaMetrics/VictoriaLogs v1.52.1 // indirect
