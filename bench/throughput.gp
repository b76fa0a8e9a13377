# Throughput by write size (bench/run.lua writes the data, then runs this):
#   gnuplot -e "data='build/bench/throughput.dat'; out='bench/throughput.png'" bench/throughput.gp
# Columns: size, then one per way (the first line names them).
set terminal pngcairo size 900,560 font "sans,10"
set output out
set title "Bulk throughput by write size (higher is better; process CPU time, medians)"
set xlabel "bytes per write"
set ylabel "MiB/s"
set logscale x 2
set xrange [45:24000]
set xtics ("64" 64, "1 KiB" 1024, "16 KiB" 16384)
set logscale y 2
set key top left
# nine distinct colours: the default cycle has eight
colours = "#9400d3 #009e73 #56b4e9 #e69f00 #f0e442 #0072b2 #e51e10 #000000 #8b4513"
do for [k=1:9] { set linetype k lc rgb word(colours, k) lw 2 pt k }
set grid
stats data skip 1 nooutput
plot for [i=2:STATS_columns] data using 1:i with linespoints linetype (i - 1) title columnheader(i)
