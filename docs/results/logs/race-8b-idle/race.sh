for t in q4_0 q3_K q2_K; do
  /usr/bin/time -v dotnet /tmp/build-main/Matq.Cli.dll bench race --model /tmp/r8/syn8b-8sym.matq --types $t --threads 1,2 --prompt-tokens 64 --decode-tokens 32 --repeats 3 --out /tmp/r8/race-8b-$t.md > /tmp/r8/race-$t.log 2>&1
done
