// Object and array churn in a JVM (G1, told to keep little free heap: it grows, collects,
// uncommits and grows again), for launch
// and attach captures.
//
//   java -Xms8m -Xmx256m -XX:+UseG1GC -XX:MinHeapFreeRatio=10 -XX:MaxHeapFreeRatio=20 \
//        -cp workloads/bin JavaChurn ROUNDS         then "final VmPTE: N kB"
//   java ... JavaChurn 0                                               forever ("ready"), for attach
//
// Each round allocates 20,000 small int arrays (garbage) and 16 arrays of 1 MiB (kept, the oldest
// half dropped past 64), then asks for a full GC.  The server (ROUNDS 0) also swings: every 10
// rounds it drops all but 8 of its arrays, so the collector shrinks the heap (uncommits)
// and grows it again.
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class JavaChurn {
    static final ArrayList<byte[]> keep = new ArrayList<>();

    static void round() {
        ArrayList<Object> junk = new ArrayList<>();
        for (int i = 0; i < 20000; i++) junk.add(new int[64]);
        for (int i = 0; i < 16; i++) keep.add(new byte[1 << 20]);
        if (keep.size() > 64) keep.subList(0, 32).clear();
        System.gc();
    }

    static String vmpteKb() throws Exception {
        String s = new String(Files.readAllBytes(Paths.get("/proc/self/status")));
        Matcher m = Pattern.compile("VmPTE:\\s+(\\d+) kB").matcher(s);
        return m.find() ? m.group(1) : "?";
    }

    public static void main(String[] args) throws Exception {
        int rounds = args.length > 0 ? Integer.parseInt(args[0]) : 20;
        if (rounds > 0) {
            for (int r = 0; r < rounds; r++) round();
            System.out.printf("final VmPTE: %8s kB%n", vmpteKb());
            return;
        }
        for (int r = 0; r < 5; r++) round();
        System.out.println("ready");
        System.out.flush();
        for (int r = 0; ; r++) {
            round();
            if (r % 10 == 9) keep.subList(0, keep.size() - 8).clear();
            Thread.sleep(20);
        }
    }
}
