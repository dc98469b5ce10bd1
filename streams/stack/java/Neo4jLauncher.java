// Runs an embedded Neo4j 5.26 community database with Bolt on, until SIGTERM.
// Usage: java -cp 'lib/*' Neo4jLauncher.java HOME_DIR HOST BOLT_PORT
// Prints "NEO4J READY bolt://HOST:PORT" once the database accepts Bolt connections.
import java.nio.file.Path;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;

public class Neo4jLauncher {
    public static void main(String[] args) throws Exception {
        Path home = Path.of(args[0]);
        String host = args[1];
        int port = Integer.parseInt(args[2]);
        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
            .setConfig(BoltConnector.enabled, true)
            .setConfig(BoltConnector.listen_address, new SocketAddress(host, port))
            .setConfig(GraphDatabaseSettings.auth_enabled, false)
            .build();
        dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME).executeTransactionally("RETURN 1");
        Runtime.getRuntime().addShutdownHook(new Thread(dbms::shutdown));
        System.out.println("NEO4J READY bolt://" + host + ":" + port);
        System.out.flush();
        Thread.currentThread().join();
    }
}
